"""Checks of an answer, each a small named part: `Agent(checks=[...])`.

A check looks at a candidate answer and what the run has seen (`Evidence`) and says one of three
things: it refuses the answer (`Finding.refuse`, with a reason the model is shown), it confirms it
(`Finding.confirm`: something was checked and holds), or it has nothing to say (None). An answer
no check refused is the answer; it is "verified" only when some check confirmed it.

DEFAULT holds for any tool, any language and any model size: it refuses only what is never an
answer. SMALL_MODEL adds the grounding rules written for very small models with the built-in
calculator, notes and files (agent/grounding.py): they key on English wording and on numbers, so
they are opt-in.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent import results
from agent.arithmetic import mended, wrong_equations
from agent.grounding import grounding_problems, tools_asked_for
from agent.offers import Observation, looping

# A tool-call tag of any format the engine knows, or the start of one: text that opens a call is no answer.
_CALL_TAGS = re.compile(r"<tool_call>|</tool_call>|\[TOOL_CALLS\]|<\|python_tag\|>|<function[=>]")


@dataclass(frozen=True)
class Evidence:
    """What the run has seen when an answer is checked."""

    task: str
    observations: Sequence[Observation] = ()  # the tool calls so far, oldest first
    notes: Sequence[str] = ()  # recalled from memory
    said: Sequence[str] = ()  # what the model was told that is not a result: earlier refusals' reasons
    tools: Sequence[dict[str, Any]] = ()  # the offered tools' schemas

    @property
    def results(self) -> list[str]:
        return [o.shown for o in self.observations if o.ok]

    @property
    def errors(self) -> list[str]:
        return [o.shown for o in self.observations if not o.ok]

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]


@dataclass(frozen=True)
class Finding:
    rule: str
    passed: bool
    reason: str
    call_next: bool = False  # the model should call a tool on its next turn (a forced call)
    mended: str | None = None  # the answer with this fault put right, where the check can do that itself

    @classmethod
    def refuse(cls, check: Check, reason: str, call_next: bool = False, mended: str | None = None) -> Finding:
        return cls(check.name, False, reason, call_next, mended)

    @classmethod
    def confirm(cls, check: Check, what: str) -> Finding:
        return cls(check.name, True, what)


class Check:
    """A rule about answers. Subclasses name the failure they prevent in their docstring."""

    name: ClassVar[str] = "check"
    # Holds the answer to what the tools and notes found: left out for an answer the agent itself asked for
    # from the model's own knowledge, after every call failed (there is nothing to hold it to).
    holds_to_evidence: ClassVar[bool] = False

    def __call__(self, answer: str, evidence: Evidence) -> Finding | Sequence[Finding] | None:
        raise NotImplementedError


class NotACall(Check):
    """A tool call written as text is not an answer: the raw `<tool_call>{"name": "days_between", ...}`
    of a call the engine could not read, the JSON of a call of an offered tool, or a call written as
    code that the run never made, with the result it "returns" made up (Qwen2.5-Coder-1.5B:
    `product_price({"product": "notebook"}) -> 3.8`, "Let's assume it returns 51.8")."""

    name = "not_a_call"

    def __call__(self, answer: str, evidence: Evidence) -> Finding | None:
        made = [o.call for o in evidence.observations]
        unmade = [c for c in code_calls(answer, evidence.tools) if c not in made]
        if _CALL_TAGS.search(answer) or _names_a_call(answer, evidence.tool_names) or unmade:
            return Finding.refuse(self, "That reply is a tool call written as text; make the call itself, "
                                        "or answer in words", call_next=bool(evidence.tools))
        return None


# A reply that opens as a call, whole or cut off by max_tokens: `{"name": "product_price", "arguments": {...`
_OPENS_A_CALL = re.compile(r'\s*(?:```\w*\s*)?\[?\s*\{\s*"name"\s*:\s*"([^"]+)"')


def _names_a_call(text: str, names: Sequence[str]) -> bool:
    if (opening := _OPENS_A_CALL.match(text)) and opening.group(1) in names:
        return True
    return bool(written_calls(text, names))


def written_calls(text: str, names: Sequence[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The calls a reply writes as JSON text, `{"name": ..., "arguments": {...}}` anywhere in it, of the
    tools named (any name when None): (name, arguments)."""
    calls = []
    for match in re.finditer(r"\{", text):
        try:
            value, _ = json.JSONDecoder().raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and isinstance(value.get("name"), str) and (names is None or value["name"] in names):
            arguments = value.get("arguments", value.get("parameters", {}))
            calls.append((value["name"], arguments if isinstance(arguments, dict) else {}))
    return calls


def code_calls(text: str, tools: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The calls of the offered tools (their schemas) a reply writes as code: `name({"key": value})`,
    `name(key=value)` or `name(value, ...)` (arguments in the order of the tool's parameters); only
    literal values are read (`ast.literal_eval`, nothing is run): (name, arguments), in order."""
    schemas = {t["function"]["name"]: t["function"].get("parameters", {}) for t in tools}
    parameters = {name: list(schema.get("properties", {})) for name, schema in schemas.items()}
    if not parameters:
        return []
    calls = []
    pattern = rf"(?<![\w.])({'|'.join(map(re.escape, parameters))})\s*\("
    for match in re.finditer(pattern, text):
        inner = _inside_brackets(text, match.end())
        arguments = None if inner is None else _code_arguments(inner, parameters[match.group(1)])
        if arguments is not None and set(schemas[match.group(1)].get("required", [])) <= set(arguments):
            calls.append((match.group(1), arguments))
    return calls


def _inside_brackets(text: str, start: int, limit: int = 2000) -> str | None:
    """What stands between the "(" before `start` and the ")" that closes it (quotes respected)."""
    depth, quote = 1, ""
    for i in range(start, min(len(text), start + limit)):
        c = text[i]
        if quote:
            quote = "" if c == quote and text[i - 1] != "\\" else quote
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def _code_arguments(inner: str, names: list[str]) -> dict[str, Any] | None:
    if inner.strip().startswith("{"):
        try:
            value = json.loads(inner)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    try:
        call = ast.parse(f"f({inner})", mode="eval").body
        positional = [ast.literal_eval(a) for a in call.args]
        keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return None
    if len(positional) > len(names) or len(keywords) < len(call.keywords) or not (positional or keywords):
        return None
    return {**dict(zip(names, positional)), **keywords}


class NamesAnUncalledTool(Check):
    """An answer that talks about a tool the run has not called is a plan to call it, not an answer:
    "To find the number of pounds in 70 kg, we can use the `convert_units` function...". A tool is
    named as code: in backticks, followed by "(", or an identifier with "_" or ".", whole."""

    name = "names_an_uncalled_tool"

    def __call__(self, answer: str, evidence: Evidence) -> Finding | None:
        called = {o.name for o in evidence.observations}
        named = [n for n in evidence.tool_names if n not in called and _names_tool(answer, n)]
        if named:
            return Finding.refuse(self, f"The reply describes calling {', '.join(named)} instead of calling it; "
                                        "call the tool now", call_next=True)
        return None


def _names_tool(text: str, name: str) -> bool:
    whole = rf"(?<![\w.]){re.escape(name)}(?![\w])"
    if re.search(rf"`{re.escape(name)}(\(\))?`|{whole}\s*\(", text):
        return True
    return bool(re.search(r"[_.]", name) and re.search(whole, text))


class NotAMessage(Check):
    """A tool's error or a check's own reason repeated as the answer is not an answer ('The shop does not
    sell "desk lamps, quantity: 3"', Qwen2.5-Coder-1.5B's answer after product_price refused that name).
    Its first six words, in the answer, in order, whatever the quotes and punctuation."""

    name = "not_a_message"

    def __call__(self, answer: str, evidence: Evidence) -> Finding | None:
        words = " ".join(re.findall(r"\w+", answer.casefold()))
        for message in [*evidence.errors, *evidence.said]:
            core = re.sub(r"^(error: )?(\w+(Error|Exception): )?", "", message)  # "error: KeyError: the shop ..."
            opening = re.findall(r"\w+", core.casefold())[:6]
            if len(opening) == 6 and " ".join(opening) in words:
                return Finding.refuse(self, "The answer repeats an error or a check's message; answer the task")
        return None


class NotOnlyErrors(Check):
    """An answer given when the run's one call failed stands on nothing the tools found. Asked "What is the
    chemical symbol for gold?", Qwen2.5-Coder-1.5B called find_book("Gold") and answered that gold "is not
    listed in the catalogue". Such an answer goes back once: AnswerWhenNoToolWorks then asks with the
    error in front of the model and no tools (as it does at once after two failed calls); written again,
    it passes."""

    name = "not_only_errors"
    REASON = "The only tool call failed, so the tools found nothing for this answer; answer the task"

    def __call__(self, answer: str, evidence: Evidence) -> Finding | None:
        if len(evidence.observations) != 1 or evidence.results or self.REASON in evidence.said:
            return None
        return Finding.refuse(self, self.REASON)


class GuessedAboutAName(Check):
    """An answer whose numbers come from nowhere (not the task, a tool's reply or a note), given when a name the
    task quotes went into no call, is a guess about that name: asked how many pages 'Night Harbor' and 'Salt and
    Sparrows' have together, Qwen2.5-Coder-1.5B answered 240 + 220 without a call, and Qwen2.5-Coder-0.5B
    "Let's assume ... 100 and 200". It goes back with a forced call (told in words, the 1.5B wrote the reason
    back as its answer), once for each set of names left: after looking up 'Night Harbor' alone, the 1.5B kept
    its invented year for 'The Copper Orchard'. Answered again with the same names left (no tool may know
    them), it passes."""

    name = "guessed_about_a_name"
    holds_to_evidence = True

    def __call__(self, answer: str, evidence: Evidence) -> Finding | None:
        if not evidence.tools:
            return None
        unasked = results.names_no_call_took(evidence.task, evidence.observations)
        known = results.numbers(" ".join([evidence.task, *(o.shown for o in evidence.observations), *evidence.notes]))
        listed = re.sub(r"(?m)^\s*\d+[.)]\s", " ", answer)  # "1. Identify the language" numbers a step, it states nothing
        if not unasked or not results.numbers(listed) - known:
            return None
        names = ", ".join(f"'{name}'" for name in unasked)
        reason = (f"The task names {names}, which no tool was asked about, and the answer's numbers come from no "
                  "tool; call the tool that looks it up")
        return None if reason in evidence.said else Finding.refuse(self, reason, call_next=True)


class NotEmpty(Check):
    """A reply with no text (a model that stopped at once, or wrote only whitespace) is no answer."""

    name = "not_empty"

    def __call__(self, answer: str, evidence: Evidence) -> Finding | None:
        return None if answer.strip() else Finding.refuse(self, "The reply was empty; answer the task")


class NotALoop(Check):
    """A reply that is mostly one short unit written again and again ("42, 42, 42, ...", "shi-shi-shi-...")
    is a model caught in a loop, in any language, and no answer (offers.looping, as for calls). SmolLM2's
    answers to a user's own tools were so, and passed as verified."""

    name = "not_a_loop"

    def __call__(self, answer: str, evidence: Evidence) -> Finding | None:
        loop = looping(answer)
        return None if loop is None else Finding.refuse(
            self, f"The reply repeats {loop[0].strip()!r} {loop[1]} times in a row; answer the task in a sentence")


class StatesAResult(Check):
    """Confirms, never refuses: an answer that states what the last successful call returned (one of its
    numbers, or a value of its JSON) has something checked behind it. Only the last: a chain's earlier
    result stated as the answer ("41.25", the toaster's price in euros, for its price in dollars) is
    where a chain stops short. So is a number or a quoted name of the task that no call took ("34.5", a
    desk lamp's price, for what 3 of them cost; "412", one book's pages, for how many more it has than
    'Night Harbor', never looked up): then nothing is confirmed. What the task itself says is no result
    ("Night Harbor", the title find_book was asked for, in its JSON), and an answer with a number that
    neither the task nor any result holds worked something out itself ("12 + 7 + 30 = 59" from a file
    that says 12, 7 and 30): the result it states is not what it concludes. An answer from the model's
    own knowledge is left unverified, which is not a failure. A number result confirms an answer that
    states it even where the task says that number too, unless the call was given it (an echo); a text
    result (not JSON), an answer whose every word the task did not say is one of the result's ("Friday"
    from "The demo is on Friday.")."""

    name = "states_a_result"

    def __call__(self, answer: str, evidence: Evidence) -> Finding | None:
        ok = [o for o in evidence.observations if o.ok]
        if not ok:
            return None
        taken = {v for o in ok for v in results.numbers(o.arguments)}
        if results.numbers(evidence.task) - taken:
            return None
        if results.names_no_call_took(evidence.task, ok):
            return None
        if results.worked_out(answer, [evidence.task, *evidence.results]):
            return None
        said = results.stated(answer) - results.stated(evidence.task)  # "Night Harbor" from find_book's JSON is no result of it
        last = ok[-1].shown
        if any(not results.values(o.shown) & said for o in results.same_tool_before(evidence.observations, evidence.task)):
            return None
        if results.is_number(last):
            # A number the call was given is no result: "12.0" from convert_units(12, "gal", "gal") for the litres
            # in 12 gallons (Qwen2.5-Coder-0.5B). Another is, though the task says it too ("9" for 3 * 1 * 3).
            if float(last) in results.numbers(ok[-1].arguments):
                return None
            if results.same_number(last.strip(), results.number_texts(answer)):
                return Finding.confirm(self, f"the answer states {last.strip()}, the last tool result")
        for value in results.values(last):
            if value in said or results.same_number(value, said):
                return Finding.confirm(self, f"the answer states {value}, the last tool result")
        words = results.words(answer) - results.words(evidence.task)
        if words and not results.is_json(last) and words <= results.words(last):  # "Friday" from "The demo is on Friday."
            return Finding.confirm(self, "the answer's words are the last tool result's")
        return None


class SumsHold(Check):
    """An answer that works a number out and writes the working must have it right: Qwen2.5-Coder-1.5B
    wrote "41.25 * 1.08 = 46.05" for a price in dollars. Each equation it writes (digits, operators,
    "=" or "≈": agent/arithmetic.py) is worked out again; a wrong one is refused with the right value.

    With `mend` (the default) the check also offers the answer put right: the result the equation
    states, and that number where the answer states it again after it. The agent takes the mended
    answer when every check then passes it (the Verdict keeps the model's); told the right value,
    Qwen2.5-Coder-1.5B wrote "41.25 * 1.08 = 46.05" again, refusal after refusal."""

    name = "sums_hold"

    def __init__(self, mend: bool = True) -> None:
        self.mend = mend

    def __call__(self, answer: str, evidence: Evidence) -> Finding | None:
        wrong = wrong_equations(answer)
        if wrong:
            return Finding.refuse(self, f"The calculation is wrong: {'; '.join(map(str, wrong))}. Correct the answer",
                                  mended=mended(answer, wrong[0]) if self.mend else None)
        return None


class Grounded(Check):
    """Opt-in (SMALL_MODEL): the grounding rules of agent/grounding.py, written for very small models with
    the calculator, notes and files. They refuse a number nothing produced, words from a sentence about
    something else, a calculation that left out what the evidence says, and a task's named tool not used.
    They read English wording, so they do not belong in the default set. Finding no problem confirms only
    an answer held to the notes alone: with tool results it confirmed "34.5", one desk lamp's price, for
    what 3 of them cost (Qwen2.5-Coder-0.5B, 6 wrong answers verified in 19); StatesAResult confirms those."""

    name = "grounded"
    holds_to_evidence = True

    def __call__(self, answer: str, evidence: Evidence) -> Finding | Sequence[Finding] | None:
        calls = [(o.arguments, o.shown) for o in evidence.observations if o.ok]
        problems = grounding_problems(evidence.task, answer, calls, evidence.notes)
        if not calls and (asked := tools_asked_for(evidence.task, list(evidence.tools))):
            problems.append(f"The task asks to use {' and '.join(asked)}; call it before answering")
        if problems:
            return [Finding.refuse(self, problem) for problem in problems]
        # No problem found is not yet something checked: "34.5", one desk lamp's price for three of them, has
        # none. An answer from tool results is confirmed by StatesAResult's narrower rule; this confirms only an
        # answer held to the notes alone.
        return Finding.confirm(self, "grounded in the notes") if evidence.notes and not calls else None


DEFAULT: tuple[Check, ...] = (NotEmpty(), NotALoop(), NotACall(), NamesAnUncalledTool(), NotAMessage(), NotOnlyErrors(),
                             GuessedAboutAName(), SumsHold(), StatesAResult())
SMALL_MODEL: tuple[Check, ...] = (*DEFAULT, Grounded())


@dataclass
class Judgement:
    findings: list[Finding] = field(default_factory=list)

    @property
    def refusals(self) -> list[Finding]:
        return [f for f in self.findings if not f.passed]

    @property
    def passed(self) -> bool:
        return not self.refusals

    @property
    def verified(self) -> bool:
        return self.passed and any(f.passed for f in self.findings)

    @property
    def mended(self) -> Finding | None:
        """The first refusal that came with the answer put right (judged again, it may pass every check)."""
        return next((f for f in self.refusals if f.mended is not None), None)


def judge(checks: Sequence[Check], answer: str, evidence: Evidence) -> Judgement:
    """Every check's findings on the answer (a check with nothing to say adds none)."""
    findings: list[Finding] = []
    for check in checks:
        found = check(answer, evidence)
        findings += [] if found is None else [found] if isinstance(found, Finding) else list(found)
    return Judgement(findings)
