"""Tool calls on the local engine: offering tools in the prompt, forcing valid calls by grammar,
and reading the calls back out of the text.

A template that knows tools (Hermes/Qwen2.5, Llama 3.1/3.2, Mistral: see tool_formats.py)
renders the tools and earlier calls itself, and the model writes calls as it was trained to.
For any other template the tools are described in the system message and earlier calls and
results are written into the conversation as text, in the Hermes format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from backends.base import BackendError
from backends.local.constraints import COMPACT_JSON
from backends.local.tokenizer import LocalTokenizer
from backends.local.tool_formats import (
    Hermes,
    Spell,
    ToolFormat,
    last_fence,
    may_be_untagged,
    native_format,
    untagged_calls,
    untagged_rules,
)
from backends.schemas import call_parameters
from backends.types import Constraint, GenerationRequest, Message, TokenEvent, ToolCall

TOOLS_PROMPT = """You can call these tools:
{tools}

To call a tool, reply with only this, one block per call:
<tool_call>
{{"name": "<tool name>", "arguments": {{<its arguments as JSON>}}}}
</tool_call>
Tool results come back in <tool_response> blocks. To answer without a tool, reply in plain text."""


def _name(tool: dict[str, Any]) -> str:
    return tool.get("function", {}).get("name", "")


def _with_tools_in_text(messages: Sequence[Message], tools: list[dict[str, Any]]) -> list[Message]:
    """The conversation for a template that knows nothing of tools."""
    lines = []
    for tool in tools:
        function = tool.get("function", {})
        lines.append(json.dumps({"name": function.get("name"), "description": function.get("description", ""),
                                 "parameters": function.get("parameters", {})}, ensure_ascii=False))
    offer = TOOLS_PROMPT.format(tools="\n".join(lines))
    out: list[Message] = []
    for message in messages:
        if message.role == "assistant" and message.tool_calls:
            blocks = [f"{Hermes.opening}\n{json.dumps({'name': c.name, 'arguments': _arguments(c)})}\n{Hermes.closing}"
                      for c in message.tool_calls]
            text = "\n".join(([message.content] if message.content else []) + blocks)
            out.append(Message(role="assistant", content=text))
        elif message.role == "tool":
            out.append(Message(role="user", content=f"<tool_response>\n{message.content}\n</tool_response>"))
        else:
            out.append(message)
    if out and out[0].role == "system":
        return [Message(role="system", content=f"{out[0].content}\n\n{offer}"), *out[1:]]
    return [Message(role="system", content=offer), *out]


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments)
    except json.JSONDecodeError:
        return call.arguments


def _json_rule(schema: dict[str, Any]) -> str:
    return "%json " + json.dumps({**schema, "x-guidance": COMPACT_JSON})


def spelling(tokenizer: LocalTokenizer) -> Spell:
    """Tags the vocabulary holds as one added token are referenced by id (llguidance's <[id]>),
    since a model writes them as that token, never as their letters; other tags are text."""
    added = {token.content: i for i, token in tokenizer.hf.get_added_tokens_decoder().items()}
    return lambda tag: f"<[{added[tag]}]>" if tag in added else json.dumps(tag)


def _answer_rule(fmt: ToolFormat, answer: Constraint | None) -> str:
    if answer is None:
        return fmt.answer_rule()
    if answer.json_schema is not None:
        return _json_rule(answer.json_schema)
    return "/" + (answer.regex or "").replace("/", "\\/") + "/"


def call_grammar(fmt: ToolFormat, tools: list[dict[str, Any]], choice: str, parallel: bool,
                 answer: Constraint | None = None, spell: Spell = json.dumps) -> str:
    """A Lark grammar whose every sentence is valid calls of the offered tools (or, for "auto", an answer)."""
    offered = tools if choice in ("auto", "required") else [t for t in tools if _name(t) == choice]
    variants = [fmt.call_schema(_name(tool), call_parameters(tool)) for tool in offered]
    rules = [*fmt.calls_rules(parallel, spell), "body: " + _json_rule({"anyOf": variants})]
    if choice == "auto":  # a free answer cannot open like a call: calls written either way keep to the schemas
        rules = ["start: answer | calls | untagged", f"answer: {_answer_rule(fmt, answer)}", *rules]
    else:
        rules = ["start: calls | untagged", *rules]
    rules += untagged_rules(parallel)
    return "\n".join(rules) + "\n"


def callable_names(request: GenerationRequest) -> list[str]:
    """The names of the tools the reply may call."""
    tools = request.tools if request.callable_tools is None else request.callable_tools
    return [_name(t) for t in tools or []]


def prepare(request: GenerationRequest, template: str, tokenizer: LocalTokenizer) -> tuple[GenerationRequest, ToolFormat | None]:
    """The request as the engine should run it, and the format of the calls its output may hold (None: no calls)."""
    tools = request.tools or []
    if not tools:
        return request, None
    fmt = native_format(template)
    messages = fmt.conversation(request.messages) if fmt else _with_tools_in_text(request.messages, tools)
    fmt = fmt or Hermes()
    constraint = request.constraint
    choice = request.tool_choice
    callable_tools = tools if request.callable_tools is None else request.callable_tools
    left = [_name(t) for t in callable_tools]
    if choice == "auto" and not left:
        choice = "none"  # nothing is left to call: the reply answers
    elif choice not in (None, "none", "auto") and (not left or choice not in ("required", *left)):
        raise BackendError(f"tool_choice {choice!r}, but callable_tools leaves only {left} to call")
    if choice is None or (choice == "none" and constraint is not None):
        return request.model_copy(update={"messages": messages}), None
    if choice == "none":
        answer_only = Constraint(grammar=f"start: {fmt.answer_rule()}\n")
        return request.model_copy(update={"messages": messages, "constraint": answer_only}), None
    if constraint is not None and constraint.grammar is not None:
        raise BackendError("tool calls combine with a JSON Schema or regex answer, not a grammar constraint")
    try:
        grammar = call_grammar(fmt, callable_tools, choice, request.parallel_tool_calls, constraint, spelling(tokenizer))
    except (TypeError, ValueError) as exc:
        raise BackendError(f"the tools' parameter schemas cannot be used: {exc}") from exc
    return request.model_copy(update={"messages": messages, "constraint": Constraint(grammar=grammar)}), fmt


def _key(call: ToolCall) -> tuple[str, str]:
    return call.name, json.dumps(_arguments(call), sort_keys=True)


def with_parsed_calls(events: Iterator[TokenEvent], fmt: ToolFormat, names: Sequence[str] = ()) -> Iterator[TokenEvent]:
    """Holds back the text of a reply that opens with a tool call; the last event carries the calls.

    A reply ends at the first call that repeats an earlier one of the same reply (small models
    loop on one call until max_tokens), and one cut off by max_tokens keeps its whole calls. A
    reply that turns out not to be calls (or is cut off before any call is whole) releases its
    text instead, so nothing is lost. Calls of the tools `names` written without the format's
    tags (bare or fenced JSON, see untagged_calls) are calls too, and so is a fence of such calls
    that ends a reply of words (last_fence): the words are the reply's text, the fence is held back.
    """
    seen: list[str] = []
    holding, released = True, 0
    for event in events:
        seen.append(event.text)
        reply = "".join(seen)
        if not holding:  # words; a ```json fence at their end may still be calls (see last_fence)
            fence = last_fence(reply) if names else None
            end = len(reply) if fence is None or fence < released else fence
            ended = event.finish_reason is not None and end < len(reply)
            calls = untagged_calls(reply[end:], names, cut=event.finish_reason == "length") if ended else []
            if calls:
                yield event.model_copy(update={"text": reply[released:end], "finish_reason": "tool_calls",
                                               "tool_calls": calls})
                return
            end = len(reply) if event.finish_reason else end
            yield event.model_copy(update={"text": reply[released:end]})
            released = end
            continue
        if reply and not fmt.may_open(reply) and not (names and may_be_untagged(reply)):
            holding, released = False, len(reply)
            yield event.model_copy(update={"text": reply})
            continue
        calls = fmt.parse(reply) if event.finish_reason or fmt.closes_call(reply) else []
        if not calls and names and (event.finish_reason or reply.rstrip().endswith(("}", "]", "```"))):
            calls = untagged_calls(reply, names, cut=event.finish_reason == "length")
        if len(calls) > 1 and _key(calls[-1]) in {_key(c) for c in calls[:-1]}:
            close = getattr(events, "close", None)
            if close is not None:
                close()
            yield event.model_copy(update={"text": "", "finish_reason": "tool_calls", "tool_calls": calls[:-1]})
            return
        if event.finish_reason is None:
            yield event.model_copy(update={"text": ""})
        elif not calls:
            yield event.model_copy(update={"text": reply})
        else:  # cut off by max_tokens in a further call: the whole calls are what the reply holds
            yield event.model_copy(update={"text": "", "finish_reason": "tool_calls", "tool_calls": calls})
