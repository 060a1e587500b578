"""How open models write tool calls, one class per format, recognised from the chat template.

- Hermes / Qwen2.5: one block per call, results come back in the template's `tool` role:
      <tool_call>
      {"name": "add", "arguments": {"a": 1, "b": 2}}
      </tool_call>
- Llama 3.1 / 3.2: the reply is the call itself, results in the `ipython` role:
      {"name": "add", "parameters": {"a": 1, "b": 2}}
- Mistral (v0.3, Nemo): a JSON array after a control token, results in [TOOL_RESULTS]:
      [TOOL_CALLS] [{"name": "add", "arguments": {"a": 1, "b": 2}}]

A format knows its grammar (as Lark rules over a `body` rule that is one call's JSON), how to
read calls back out of the text, and what the template needs of the conversation. Tags are
spelled by the caller: as a token reference where the vocabulary has the tag as one token,
as text otherwise, so the grammar and the engine's mask agree on what the model writes.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from backends.types import Message, ToolCall

MAX_CALLS = 16  # per reply: a small model may otherwise repeat one call until max_tokens
Spell = Callable[[str], str]  # a tag's text -> its Lark spelling


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _repeat(first: str, separator: str, parallel: bool) -> str:
    return first + (f" ({json.dumps(separator)} {first})~0..{MAX_CALLS - 1}" if parallel else "")


def _json_values(text: str) -> tuple[list[Any], str]:
    """The JSON values written one after another at the start of `text`, split by whitespace, ',' or ';',
    and the text after them (from the first thing that is not one)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at] in " \t\r\n;,":
            at += 1
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            return values, text[at:]
        values.append(value)


_FENCE = "```json"
_FENCED = re.compile(r"```[A-Za-z]*[ \t]*\n(.*?)\n?```", re.DOTALL)
_FENCE_OPENING = re.compile(r"\s*```[A-Za-z]*[ \t]*\n")


def untagged_calls(text: str, names: Sequence[str], cut: bool = False) -> list[ToolCall]:
    """Calls of the offered tools written without the format's tags, the way small models often write them:
    bare JSON objects (or an array of them), alone or in ```json fences, and nothing else in the reply.
    Qwen2.5-Coder-0.5B answers `tool_choice="auto"` so; llama.cpp's Hermes parser takes these shapes too.
    A reply `cut` off by max_tokens keeps the calls that are whole."""
    fenced = _FENCED.findall(text)
    if fenced and not _FENCED.sub("", text).strip():
        text = "\n".join(fenced)
    elif cut and (opening := _FENCE_OPENING.match(text)) and "```" not in text[opening.end():]:
        text = text[opening.end():]
    values, rest = _json_values(text.strip())
    if not values or (rest and not (cut and rest[0] in "{[")):
        return []
    flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
    calls = []
    for data in flat:
        if not isinstance(data, dict):
            return []
        arguments = data.get("arguments", data.get("parameters"))
        if not (data.get("name") in names and isinstance(arguments, dict)):
            return []  # one value that is not a call of an offered tool: the reply is an answer
        calls.append(ToolCall.create(ToolFormat.new_id(), data["name"], arguments))
    return calls[:MAX_CALLS]


def untagged_rules(parallel: bool) -> list[str]:
    """The Lark rule `untagged` over `body`: calls as untagged_calls reads them, bare or in one ```json fence.

    Offered beside the format's own shape when a call is forced, so that a model that opens its calls
    so (Qwen2.5-Coder-0.5B does) writes them as it would unforced, and ends its turn after them
    the way it would there, instead of going on from a tag it did not choose with call after call."""
    return ["untagged: bare | fenced", "bare: " + _repeat("body", "\n", parallel), 'fenced: "```json\\n" bare "\\n```"']


def last_fence(text: str) -> int | None:
    """Where the reply's last ``` fence begins, when it may be calls after the model's own words: it opens
    a line, and is still open or is the end of the reply. Its text is held back until that is known.
    Qwen2.5-Coder-1.5B says what it will do, then writes the call in a ```json fence."""
    start = text.rfind("```")
    tail = len(text) - len(text.rstrip("`"))  # "`" or "``" at the end: a fence being written
    if tail and (start == -1 or start < len(text) - tail):
        start = len(text) - tail
    if start <= 0 or text[:start].rstrip(" \t")[-1:] not in ("\n", ""):
        return None
    if text.count("```", 0, start) % 2:  # it closes a fence that opened before
        opening = text.rfind("```", 0, start)
        after = text[start + 3:]
        return opening if not after.strip() and text[:opening].rstrip(" \t")[-1:] == "\n" else None
    return start


def may_be_untagged(reply: str) -> bool:
    """Whether a reply that starts like this may be calls without tags (see untagged_calls)."""
    start = reply.lstrip()
    return bool(start) and (start[0] in "{[" or start.startswith("```") or "```".startswith(start))


class ToolFormat:
    opening = ""  # the text a reply of calls starts with
    tags: tuple[str, ...] = ()  # texts that a vocabulary may hold as single tokens
    arguments_key = "arguments"

    @staticmethod
    def knows(template: str) -> bool:
        raise NotImplementedError

    def calls_rules(self, parallel: bool, spell: Spell) -> list[str]:
        """The Lark rule `calls` (and its helpers) over the rule `body`, one call's JSON object.

        A repeat is always of a named rule: llguidance misreads `<[id]>)~0..15`."""
        raise NotImplementedError

    def answer_rule(self) -> str:
        """A free-text answer, which cannot be mistaken for the opening of a call, tagged or not (a JSON object
        or array, a ```json fence), so that the grammar holds every call to the tools' schemas."""
        excluded = "".join(dict.fromkeys(self.opening[0] + "{[`"))
        rule = "[^%s](.|\\n)*" % re.escape(excluded)
        # a fence of anything but JSON is an answer (code, a table)
        rule += "".join(f"|{re.escape(_FENCE[:k])}([^{re.escape(_FENCE[k])}](.|\\n)*)?" for k in range(1, len(_FENCE)))
        return "/%s/" % rule.replace("/", "\\/")

    def call_schema(self, name: str, parameters: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False, "required": ["name", self.arguments_key],
                "properties": {"name": {"const": name}, self.arguments_key: parameters}}

    def parse(self, text: str) -> list[ToolCall]:
        """The complete calls in `text`, each with a fresh id."""
        calls = []
        for data in self._objects(text):
            if not (isinstance(data, dict) and isinstance(data.get("name"), str) and data["name"]):
                continue
            arguments = data.get(self.arguments_key, data.get("arguments"))
            if isinstance(arguments, dict):  # an object without arguments is an answer, not a call
                calls.append(ToolCall.create(self.new_id(), data["name"], arguments))
        return calls

    def _objects(self, text: str) -> list[Any]:
        raise NotImplementedError

    def may_open(self, reply: str) -> bool:
        """Whether a reply that starts like this is (or may become) a set of calls."""
        return bool(reply) and (self.opening.startswith(reply) or reply.startswith(self.opening))

    def closes_call(self, reply: str) -> bool:
        """Whether the reply so far ends with a whole call (so a repeat can be caught early)."""
        return False

    def conversation(self, messages: Sequence[Message]) -> list[Message]:
        """The messages as the template can render them."""
        return list(messages)

    @staticmethod
    def new_id() -> str:
        return f"call_{uuid.uuid4().hex[:24]}"


class Hermes(ToolFormat):
    opening, closing = "<tool_call>", "</tool_call>"
    tags = (opening, closing)
    _call = re.compile(re.escape(opening) + r"\s*(\{.*?\})\s*" + re.escape(closing), re.DOTALL)

    @staticmethod
    def knows(template: str) -> bool:
        return "<tool_call>" in template

    def calls_rules(self, parallel: bool, spell: Spell) -> list[str]:
        return ["calls: " + _repeat("call", "\n", parallel),
                f'call: {spell(self.opening)} "\\n" body "\\n" {spell(self.closing)}']

    def _objects(self, text: str) -> list[Any]:
        return [_loads(match.group(1)) for match in self._call.finditer(text)]

    def closes_call(self, reply: str) -> bool:
        return reply.rstrip().endswith(self.closing)


class Llama3(ToolFormat):
    opening = "{"
    arguments_key = "parameters"

    @staticmethod
    def knows(template: str) -> bool:
        return "<|start_header_id|>" in template and "ipython" in template

    def calls_rules(self, parallel: bool, spell: Spell) -> list[str]:
        return ["calls: " + _repeat("body", "; ", parallel)]

    def _objects(self, text: str) -> list[Any]:
        return _json_values(text)[0]

    def conversation(self, messages: Sequence[Message]) -> list[Message]:
        """Llama's templates render one call per assistant turn: parallel calls become turns in a row."""
        out: list[Message] = []
        for message in messages:
            if message.role == "assistant" and message.tool_calls and len(message.tool_calls) > 1:
                out += [Message(role="assistant", tool_calls=[call]) for call in message.tool_calls]
            else:
                out.append(message)
        return out


class Mistral(ToolFormat):
    opening = "[TOOL_CALLS]"
    tags = (opening,)

    @staticmethod
    def knows(template: str) -> bool:
        return "[TOOL_CALLS]" in template

    def calls_rules(self, parallel: bool, spell: Spell) -> list[str]:
        return [f'calls: {spell(self.opening)} " [" items "]"', "items: " + _repeat("body", ", ", parallel)]

    def _objects(self, text: str) -> list[Any]:
        start = text.find(self.opening)
        if start == -1:
            return []
        rest = text[start + len(self.opening):].lstrip()
        return _json_values(rest[1:])[0] if rest.startswith("[") else []  # item by item: a cut-off array keeps its whole calls

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:9]

    def conversation(self, messages: Sequence[Message]) -> list[Message]:
        """Mistral's templates take only call ids of 9 letters and digits: others are mapped, the same way each time."""
        out = []
        for message in messages:
            if message.tool_calls:
                calls = [c.model_copy(update={"id": _mistral_id(c.id)}) for c in message.tool_calls]
                message = message.model_copy(update={"tool_calls": calls})
            elif message.tool_call_id:
                message = message.model_copy(update={"tool_call_id": _mistral_id(message.tool_call_id)})
            out.append(message)
        return out


def _mistral_id(call_id: str) -> str:
    if len(call_id) == 9 and call_id.isalnum():
        return call_id
    return hashlib.sha256(call_id.encode()).hexdigest()[:9]


FORMATS: tuple[ToolFormat, ...] = (Mistral(), Hermes(), Llama3())


def native_format(template: str) -> ToolFormat | None:
    """The format the chat template renders tool calls in; None when it knows no tools."""
    return next((f for f in FORMATS if f.knows(template)), None)
