"""What the next act turn may do, given the evidence so far: the calls its grammar offers, the calls
it may not repeat, whether it must call, and the result its answer must give.

With the grounding checks on, the grammar does not offer what they would refuse anyway:
- arithmetic only on numbers the run has seen (calculator("1234567890") is a guess);
- a calculation starts from the task's numbers and what the evidence states about its subject, each
  used as often as given ("250 + 790", not "250*250*250..."), by the operations the task names; under
  way it goes on from its last result and the numbers left ("345 * 2" after "300 + 45"), with no answer
  in between (SeenNumbers.each_once);
- tools the task names come first ("Read notes.txt", "use the calculator"): until each has been
  called, only they are offered, and an answer waits for them;
- once a result answers the task (grounding.answer_in_hand), the answer gives that result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.grounding import (
    answer_in_hand,
    first_step_numbers,
    grounded_numbers,
    number_texts,
    numbers,
    tools_asked_for,
    unfinished_calculation,
    unused_task_numbers,
)
from agent.operations import operations_done, operations_left
from tools import SeenNumbers, ToolRegistry


@dataclass(frozen=True)
class Observation:
    """One tool call of this run and what came of it: the evidence verify and later turns see."""

    name: str
    arguments: str  # JSON text
    shown: str  # the output, or "error: ..."
    ok: bool
    repeated: bool = False

    @property
    def line(self) -> str:
        return f"{self.name}({self.arguments}) -> {self.shown}"

    @property
    def call(self) -> tuple[str, dict[str, Any]]:
        """(name, arguments): the call as a reply asks for it, to compare with calls already made."""
        return self.name, parse_arguments(self.arguments)


@dataclass(frozen=True)
class Offer:
    tools: list[dict[str, Any]]  # the schemas of the tools the turn may call, grounded arguments narrowed
    made: list[tuple[str, dict[str, Any]]]  # calls it may not make again
    must_call: bool  # no answer yet
    held: str | None = None  # a result that answers the task: the answer must give it


def next_offer(registry: ToolRegistry, task: str, notes: Sequence[str], evidence: Sequence[Observation], *,
               grounded: bool, answer_only: bool = False, new_calls_only: bool = False) -> Offer:
    """grounded: the agent checks grounding (else every tool, as declared). answer_only: the turn
    may only answer. new_calls_only: after a replan, the turn must make a call not made yet."""
    made = [o.call for o in evidence] if new_calls_only else []
    if not grounded:
        return Offer([] if answer_only else registry.schemas(), made, new_calls_only and not answer_only)
    calls = [(o.arguments, o.shown) for o in evidence if o.ok]
    if answer_only:
        return Offer([], made, False, calls[-1][1].strip() if answer_in_hand(task, calls) else None)
    computing = {tool.name for tool in registry if tool.grounded}
    operators = tuple(s for s in operations_left(task, calls) if s in SeenNumbers.operators) or SeenNumbers.operators
    if computing and unfinished_calculation(task, calls):
        carried = {*numbers(calls[-1][1]), *unused_task_numbers(task, calls)}
        seen = SeenNumbers(tuple(number_texts(carried)), each_once=True, operators=operators)
        return Offer([s for s in registry.schemas(seen) if s["function"]["name"] in computing], made, True)
    start = first_step_numbers(task, calls, notes)
    if not operations_done(calls) and 2 <= len(start) <= 5:
        seen = SeenNumbers(tuple(number_texts(start, distinct=False)), each_once=True, operators=operators)
    else:
        seen = SeenNumbers(tuple(number_texts(grounded_numbers(task, calls, notes))))
    schemas = registry.schemas(seen)
    pending = set(tools_asked_for(task, schemas)) - {o.name for o in evidence}
    if pending:
        return Offer([s for s in schemas if s["function"]["name"] in pending], made, True)
    return Offer(schemas, made, new_calls_only)


def parse_arguments(text: str) -> dict[str, Any]:
    """A call's JSON arguments as a dict; {} for what is none."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def no_tool_worked(evidence: Sequence[Observation]) -> bool:
    """Two calls or more, and every one failed: the tools do not serve the task."""
    return len(evidence) >= 2 and not any(o.ok for o in evidence)


_RUN = re.compile(r"(.{1,12}?)\1+", re.S)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [text for item in items for text in _strings(item)]


def looping(value: Any) -> tuple[str, int] | None:
    """(unit, times) where a text, or a string among a call's arguments, is mostly one short unit written
    again and again: a model caught in a loop ("3*3*3*...", "tau-tau-tau-..."), whatever the tool and the
    language. A unit with a separator counts from 8 times in a row, letters or digits alone from 20 (no
    15-digit number has 20 zeros). Over half of the string must be the run."""
    for text in _strings(value):
        for run in _RUN.finditer(text):
            unit, length = run.group(1), len(run.group(0))
            times = length // len(unit)
            if times >= (20 if unit.isalnum() else 8) and length * 2 > len(text.strip()):
                return unit, times
    return None
