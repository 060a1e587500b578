"""What the model may say at each phase: the JSON schemas that constrain it, and the parser
(with repairs) for backends that cannot constrain."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

from backends.schemas import call_parameters, not_any_of, other_than

# Every free string is bounded in characters, and every sentence in words and word length too, so
# that no constrained reply can run to max_tokens inside one field (a plan step of "1000000…", a
# verdict reason of "1.3.1.1…"): even at one character a token, each phase fits the agent's
# default budget of 300 tokens.
MAX_STRING = 160  # an answer line
ARGUMENT_CHARS = 240  # shared by a call's free string arguments
STEP_CHARS, REASON_CHARS = 50, 80

# Any script: \p{..} are Unicode classes (llguidance's regex; Python's re has none, and never sees these).
_OPENING = r"[\p{L}\p{N}\p{Sc}$(¿¡\-\u2212]"  # a letter, digit or currency sign of any script, "(", "¿", a minus
ANSWER_LINE = _OPENING + r"[^\n]{0,%d}" % (MAX_STRING - 1)
ANSWER_PATTERN = f"^{ANSWER_LINE}$"
# A reply in words, which does not open like a call (a JSON object or array, a tag, a ```json fence).
TEXT_ANSWER = r"([^{\[<`\s]|`[^`]|``[^`]|```[^j])[\s\S]*"
# A step or a reason reads as a sentence: a capitalized word, then words (or, in a script without
# case, a run of its letters). Without this a small model fills a plan with fragments ("./37 * 91",
# "10.00") that then mislead the act phase.
_WORD = r"[\p{L}\p{N}\p{Sc}*+/.,?'%=()°\-]{1,24}"
_CASELESS = r"\p{Lo}[^\n\"\\]{1,%d}"
STEP_PATTERN = rf"^(\p{{Lu}}\p{{Ll}}{{1,23}}( {_WORD}){{1,12}}|{_CASELESS % (STEP_CHARS - 1)})$"
REASON_PATTERN = rf"^(\p{{Lu}}\p{{Ll}}{{0,23}}( {_WORD}){{1,16}}|{_CASELESS % (REASON_CHARS - 1)})$"
# An answer in the model's own type: a number (at most 4 decimals: an unbounded fraction never
# ends), a boolean, or a line of text. A string-only answer bent "1769307" into "math".
ANSWER_VALUE = {"anyOf": [{"type": "string", "pattern": ANSWER_PATTERN, "maxLength": MAX_STRING},
                          {"type": "number", "multipleOf": 0.0001, "minimum": -1e15, "maximum": 1e15},
                          {"type": "boolean"}]}


def answer_holding(number: str, anchored: bool = True) -> dict[str, Any] | str:
    """The answer once a tool's result answers the task: `number` (as the tool wrote it) itself, or a
    line that states it ("The total is 690 apples."), never another number in its place (345 was
    answered after the calculator had gone on to 690). A regex when not `anchored` (the native answer)."""
    n = re.escape(number)
    line = (rf"(?:[A-Za-z$(](?:[^\n]{{0,70}}[^0-9.\n-])?)?{n}"
            rf"(?:[^0-9.\n][^\n]{{0,70}}|\.(?:[^0-9\n][^\n]{{0,69}})?)?")
    if not anchored:
        return line
    return {"anyOf": [{"type": "string", "pattern": f"^{line}$", "maxLength": MAX_STRING},
                      {"type": "number", "const": json.loads(number)}]}


def plan_schema(max_steps: int, direct: bool = False, avoid: list[list[str]] = ()) -> dict[str, Any]:
    """A plan of steps; with `direct`, the choice between a plan and answering at once.

    `avoid`: earlier plans the new one may not equal (a replan that repeats the plan that failed
    changes nothing).
    """
    step = {"type": "string", "pattern": STEP_PATTERN, "maxLength": STEP_CHARS}
    steps = _steps_other_than(step, max_steps, [p for p in avoid if p]) if avoid else \
        {"type": "array", "items": step, "minItems": 1, "maxItems": max_steps}
    plan = {"type": "object", "properties": {"steps": steps}, "required": ["steps"], "additionalProperties": False}
    if not direct:
        return plan
    answer = {"type": "object", "properties": {"answer": ANSWER_VALUE}, "required": ["answer"], "additionalProperties": False}
    return {"anyOf": [plan, answer]}


def _steps_other_than(step: dict[str, Any], max_steps: int, plans: list[list[str]]) -> dict[str, Any]:
    """Step lists equal to none of `plans`: of a length none of them has, or with a step i that
    none of them has at i."""
    lengths = {len(p) for p in plans}
    options = [{"type": "array", "items": step, "minItems": n, "maxItems": n}
               for n in range(1, max_steps + 1) if n not in lengths]
    for i in range(min(lengths, default=0)):
        new_step = {"allOf": [step, {"type": "string", "pattern": not_any_of([p[i] for p in plans])}]}
        options.append({"type": "array", "prefixItems": [step] * i + [new_step], "items": step,
                        "minItems": i + 1, "maxItems": max_steps})
    return {"anyOf": options}


VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"passed": {"type": "boolean"},
                   "reasons": {"type": "array", "maxItems": 3,
                               "items": {"type": "string", "pattern": REASON_PATTERN, "maxLength": REASON_CHARS}}},
    "required": ["passed", "reasons"], "additionalProperties": False,
}


def answer_text(value: Any) -> str:
    """An answer as text: strings as written, numbers and booleans as JSON writes them."""
    return value if isinstance(value, str) else json.dumps(value)


def _free_strings(schema: Any) -> int:
    if isinstance(schema, dict):
        own = schema.get("type") == "string" and not {"maxLength", "enum", "const"} & set(schema)
        return own + sum(_free_strings(v) for v in schema.values())
    return sum(_free_strings(v) for v in schema) if isinstance(schema, list) else 0


def callable_tools(tool_schemas: list[dict[str, Any]], made: list[tuple[str, dict[str, Any]]] = ()) -> list[dict[str, Any]]:
    """The tools, each one's parameters narrowed to calls not in `made` (name, arguments); a tool
    whose every call is made is left out. A small model loops on one call, and a repeat learns nothing."""
    out = []
    for schema in tool_schemas:
        fn = schema["function"]
        params = call_parameters(schema)
        definitions = params.pop("$defs", None)  # kept at the top, where "$ref"s look
        params = other_than(params, [args for name, args in made if name == fn["name"]])
        if params is not None:
            params = {**params, "$defs": definitions} if definitions else params
            out.append({"type": "function", "function": {**fn, "parameters": params}})
    return out


def act_schema(tool_schemas: list[dict[str, Any]], max_calls: int = 4,
               made: list[tuple[str, dict[str, Any]]] = (), must_call: bool = False) -> dict[str, Any]:
    """Exactly one choice: a list of calls to the offered tools (each with valid arguments), or an answer.

    `made`: calls already made, which the choices exclude (callable_tools).
    `must_call`: no answer, only calls (while a tool is left to call).
    """
    definitions: dict[str, Any] = {}
    calls = []
    strings_of = {s["function"]["name"]: _free_strings(s["function"].get("parameters") or {}) for s in tool_schemas}
    for schema in callable_tools(tool_schemas, made):
        fn = schema["function"]
        strings = max(1, strings_of[fn["name"]]) * max_calls
        params = call_parameters(schema, max(24, min(MAX_STRING, ARGUMENT_CHARS // strings)))
        definitions.update(params.pop("$defs", {}))
        calls.append({
            "type": "object",
            "properties": {"name": {"const": fn["name"]}, "arguments": params},
            "required": ["name", "arguments"], "additionalProperties": False,
        })
    # An answer starts like a sentence or a number; without this a small model opens with stray "}" or "]".
    answer = {"type": "object", "properties": {"answer": ANSWER_VALUE}, "required": ["answer"],
              "additionalProperties": False}
    options = [] if must_call and calls else [answer]
    if calls:
        options.insert(0, {
            "type": "object",
            "properties": {"tool_calls": {"type": "array", "items": {"anyOf": calls}, "minItems": 1, "maxItems": max_calls}},
            "required": ["tool_calls"], "additionalProperties": False,
        })
    schema: dict[str, Any] = {"anyOf": options}
    if definitions:
        schema["$defs"] = definitions
    return schema


_ANSWER_OPENING = '{"answer": "'


def partial_answer(text: str, native: bool = False) -> str | None:
    """The answer so far in a streamed act turn `{"answer": "...` (the act schema's), or None when
    the turn is not an answer. A native turn's text is the answer itself: its calls stream no text.

    The JSON string is decoded up to the last complete character; an escape cut in half waits
    for its next token.
    """
    if native:
        return text or None
    if not text.startswith(_ANSWER_OPENING):
        return None
    body, out, i = text[len(_ANSWER_OPENING):], [], 0
    while i < len(body):
        char = body[i]
        if char == '"':
            break
        if char != "\\":
            out.append(char)
            i += 1
            continue
        width = 6 if body[i + 1 : i + 2] == "u" else 2
        if i + width > len(body):
            break
        try:
            out.append(json.loads(f'"{body[i : i + width]}"'))
        except json.JSONDecodeError:
            out.append(body[i : i + width])
        i += width
    return "".join(out)



class TurnError(ValueError):
    """The reply could not be read; the message is fed back to the model."""


@dataclass
class Turn:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answer: str | None = None


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _json_object(text: str) -> Any:
    """The first JSON object in `text`, repairing what small models commonly get wrong."""
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start = text.find("{")
    if start == -1:
        raise TurnError("no JSON object found")
    candidate, depth, in_string, escaped = None, 0, False, False
    for i, ch in enumerate(text[start:], start):
        if in_string:
            escaped = not escaped and ch == "\\"
            if ch == '"' and not escaped:
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                candidate = text[start : i + 1]
                break
    if candidate is None:
        candidate = text[start:] + "}" * max(depth, 0)  # a reply cut short: close what is open
    for attempt in (candidate, re.sub(r",\s*([}\]])", r"\1", candidate)):
        try:
            return json.loads(attempt)
        except json.JSONDecodeError:
            pass
    try:  # Python-style dicts: single quotes, True/False/None
        return ast.literal_eval(candidate)
    except (ValueError, SyntaxError) as exc:
        raise TurnError(f"invalid JSON ({exc.__class__.__name__})") from None


def parse_turn(text: str) -> Turn:
    """A reply as tool calls or an answer. Plain text without JSON counts as the answer."""
    try:
        data = _json_object(text)
    except TurnError:
        if "{" not in text and text.strip():
            return Turn(answer=text.strip())
        raise
    if not isinstance(data, dict):
        raise TurnError("the reply must be a JSON object")
    if "answer" in data and not data.get("tool_calls"):
        return Turn(answer=answer_text(data["answer"]))
    raw_calls = data.get("tool_calls")
    if raw_calls is None and "name" in data:  # a single call written without the list
        raw_calls = [data]
    if not isinstance(raw_calls, list) or not raw_calls:
        raise TurnError('expected {"tool_calls": [...]} or {"answer": "..."}')
    calls = []
    for call in raw_calls:
        if not isinstance(call, dict) or "name" not in call:
            raise TurnError("each tool call needs a name and arguments")
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                raise TurnError(f"the arguments of {call['name']} are not a JSON object") from None
        calls.append((str(call["name"]), arguments if isinstance(arguments, dict) else {}))
    return Turn(calls=calls)


def parse_json(text: str) -> Any:
    return _json_object(text)
