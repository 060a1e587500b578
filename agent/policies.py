"""Policies of the tool conversation, each a small named part: `Agent(policies=[...])`.

Checks (agent/checks.py) judge an answer; policies decide what the next model turn may do after
each turn: whether it must call a tool (tool_choice "required"), may only answer ("none": the tools
are left out of the prompt, since a small model shown them goes on calling), and what the model
reads first. The policies are asked in order; the first that has something to say decides, and
the run shows it as a `Steered` event. With none, the next turn is the model's own ("auto").

DEFAULT holds for any tool, any language and any model size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from agent import prompts
from agent.events import Verdict
from agent.offers import Observation

Choice = Literal["auto", "required", "none"]


@dataclass(frozen=True)
class Turn:
    """One model turn of the run: the calls it made, or the reply the checks judged."""

    calls: Sequence[Observation] = ()
    reply: str = ""
    verdict: Verdict | None = None


@dataclass(frozen=True)
class RunSoFar:
    """What a policy sees after a turn."""

    task: str
    turns: Sequence[Turn]  # every model turn so far, the last one last
    evidence: Sequence[Observation]  # every tool call so far
    turns_left: int  # of the step budget (max_steps)


@dataclass(frozen=True)
class Next:
    """What the next model turn may do, and why."""

    policy: str
    tool_choice: Choice
    message: str | None = None  # a user message the model reads before it replies
    why: str = ""


class Policy:
    """A rule about what the run does next. Subclasses name the failure they prevent in their docstring."""

    name: ClassVar[str] = "policy"

    def __call__(self, run: RunSoFar) -> Next | None:
        raise NotImplementedError


class AnswerWhenNothingNew(Policy):
    """A turn whose calls all repeated earlier ones learnt nothing (a repeat is not run again: its
    earlier result comes back). Qwen2.5-Coder-0.5B and 1.5B call the same tool again after its
    result; shown the tools once more, the 0.5B model writes that call a third time as text. The
    next turn answers, with what the tools found in front of it, and no tools."""

    name = "answer_when_nothing_new"

    def __call__(self, run: RunSoFar) -> Next | None:
        last = run.turns[-1]
        if not last.calls or not all(o.repeated for o in last.calls):
            return None
        return Next(self.name, "none", prompts.answer_now(run.task, run.evidence),
                    "every call of the last turn repeated an earlier one")


class CallWhenAsked(Policy):
    """A reply refused because it should have been a call (it describes calling a tool, or writes the
    call as text: the checks' `call_next`) is followed by a forced call, not by another chance to
    describe it."""

    name = "call_when_asked"

    def __call__(self, run: RunSoFar) -> Next | None:
        verdict = run.turns[-1].verdict
        if verdict is None or verdict.passed or not verdict.call_next:
            return None
        return Next(self.name, "required", why=f"{', '.join(verdict.rules)} asked for a call")


class NotTheSameRefusal(Policy):
    """A refused reply written again word for word is followed by a forced call: under greedy decoding
    the same conversation gives the same reply, so a second chance to answer changes nothing.
    Qwen2.5-Coder-1.5B repeated a tool's error as its answer four times in a row."""

    name = "not_the_same_refusal"

    def __call__(self, run: RunSoFar) -> Next | None:
        last = run.turns[-1]
        if last.verdict is None or last.verdict.passed:
            return None
        earlier = {t.reply.strip() for t in run.turns[:-1] if t.verdict is not None and not t.verdict.passed}
        if last.reply.strip() not in earlier:
            return None
        return Next(self.name, "required", why="the model wrote a refused reply again")


class AnswerOnTheLastTurn(Policy):
    """A model that goes on calling after it has what it needs (Qwen2.5-Coder-0.5B converted 30 °C to
    86 °F, then priced an apple, a desk lamp, and converted 34.5 °C, 94.1 °C, ...) would end at the
    step budget with no answer. The budget's last turn, when some call has succeeded, answers, with
    what the tools found in front of it, and no tools."""

    name = "answer_on_the_last_turn"

    def __call__(self, run: RunSoFar) -> Next | None:
        if run.turns_left != 1 or not run.turns[-1].calls or not any(o.ok for o in run.evidence):
            return None
        return Next(self.name, "none", prompts.answer_now(run.task, run.evidence), "one turn of the budget is left")


DEFAULT: tuple[Policy, ...] = (AnswerWhenNothingNew(), AnswerOnTheLastTurn(), CallWhenAsked(), NotTheSameRefusal())


def next_turn(policies: Sequence[Policy], run: RunSoFar, can_call: bool) -> Next | None:
    """The first policy's say, or None. Without tools a policy cannot force a call."""
    for policy in policies:
        decision = policy(run)
        if decision is not None and (can_call or decision.tool_choice != "required"):
            return decision
    return None
