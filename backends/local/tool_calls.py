"""Tool calls on the local engine: offering tools in the prompt, forcing valid calls by grammar,
and reading the calls back out of the text.

Calls are written the way Hermes and Qwen chat templates write them, one per block:

    <tool_call>
    {"name": "add", "arguments": {"a": 1, "b": 2}}
    </tool_call>

A template that knows this format renders the tools and earlier calls itself; for any other
template the tools are described in the system message and earlier calls and results are
written into the conversation as text, in the same format.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from backends.base import BackendError
from backends.local.constraints import COMPACT_JSON
from backends.types import Constraint, GenerationRequest, Message, TokenEvent, ToolCall, _closed

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_CALLS = 16  # per reply: a small model may otherwise repeat one call until max_tokens
_CALL = re.compile(re.escape(OPEN) + r"\s*(\{.*?\})\s*" + re.escape(CLOSE), re.DOTALL)

TOOLS_PROMPT = """You can call these tools:
{tools}

To call a tool, reply with only this, one block per call:
<tool_call>
{{"name": "<tool name>", "arguments": {{<its arguments as JSON>}}}}
</tool_call>
Tool results come back in <tool_response> blocks. To answer without a tool, reply in plain text."""


def template_knows_tools(template: str) -> bool:
    return OPEN in template


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
            blocks = [f"{OPEN}\n{json.dumps({'name': c.name, 'arguments': _arguments(c)})}\n{CLOSE}"
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


def call_grammar(tools: list[dict[str, Any]], choice: str, parallel: bool, answer_schema: dict[str, Any] | None) -> str:
    """A Lark grammar whose every sentence is valid calls of the offered tools (or, for "auto", a plain answer)."""
    offered = tools if choice in ("auto", "required") else [t for t in tools if _name(t) == choice]
    variants = []
    for tool in offered:
        parameters = tool.get("function", {}).get("parameters") or {"type": "object", "properties": {}}
        variants.append({"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
                         "properties": {"name": {"const": _name(tool)}, "arguments": _closed(parameters)}})
    rules = [
        "calls: call" + (f' ("\\n" call)~0..{MAX_CALLS - 1}' if parallel else ""),
        f'call: "{OPEN}\\n" body "\\n{CLOSE}"',
        "body: " + _json_rule({"anyOf": variants}),
    ]
    if choice == "auto":
        answer = _json_rule(answer_schema) if answer_schema is not None else r"/[^<](.|\n)*/"
        rules = ["start: answer | calls", f"answer: {answer}", *rules]
    else:
        rules = ["start: calls", *rules]
    return "\n".join(rules) + "\n"


def prepare(request: GenerationRequest, template: str) -> tuple[GenerationRequest, bool]:
    """The request as the engine should run it, and whether its output may hold tool calls."""
    tools = request.tools or []
    if not tools:
        return request, False
    messages = request.messages if template_knows_tools(template) else _with_tools_in_text(request.messages, tools)
    if request.tool_choice in (None, "none"):
        return request.model_copy(update={"messages": messages}), False
    constraint = request.constraint
    if constraint is not None and constraint.json_schema is None:
        raise BackendError("tool calls combine only with a JSON Schema answer, not a regex or grammar constraint")
    try:
        grammar = call_grammar(tools, request.tool_choice, request.parallel_tool_calls,
                               constraint.json_schema if constraint else None)
    except (TypeError, ValueError) as exc:
        raise BackendError(f"the tools' parameter schemas cannot be used: {exc}") from exc
    return request.model_copy(update={"messages": messages, "constraint": Constraint(grammar=grammar)}), True


def parse_calls(text: str) -> list[ToolCall]:
    """The complete calls in `text`, each with a fresh id."""
    calls = []
    for match in _CALL.finditer(text):
        try:
            data = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str) and data["name"]:
            calls.append(ToolCall.create(f"call_{uuid.uuid4().hex[:24]}", data["name"], data.get("arguments", {})))
    return calls


def _key(call: ToolCall) -> tuple[str, str]:
    return call.name, json.dumps(_arguments(call), sort_keys=True)


def with_parsed_calls(events: Iterator[TokenEvent]) -> Iterator[TokenEvent]:
    """Holds back the text of a reply that opens with a tool call; the last event carries the calls.

    A reply ends at the first call that repeats an earlier one of the same reply (small models
    loop on one call until max_tokens), and one cut off by max_tokens keeps its whole calls. A
    reply cut off before any call is whole releases its text instead, so nothing is lost.
    """
    seen: list[str] = []
    for event in events:
        seen.append(event.text)
        reply = "".join(seen)
        if not reply.startswith("<"):
            yield event
            continue
        calls = parse_calls(reply) if event.finish_reason or reply.rstrip().endswith(CLOSE) else []
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
