"""Policies of the tool conversation, each a small named part: `Agent(policies=[...])`.

Checks (agent/checks.py) judge an answer; policies decide what the next model turn may do after
each turn: whether it must call a tool (tool_choice "required"), may only answer ("none": the tools
are left out of the prompt, since a small model shown them goes on calling), and what the model
reads first, after the turns since the task or in their place. The policies are asked in order;
the first that has something to say decides, and the run shows it as a `Steered` event. With
none, the next turn is the model's own ("auto").

DEFAULT holds for any tool, any language and any model size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from agent import prompts
from agent.checks import NotAMessage, NotOnlyErrors, written_calls
from agent.events import Verdict
from agent.offers import Observation, no_tool_worked

Choice = Literal["auto", "required", "none"]


@dataclass(frozen=True)
class Turn:
    """One model turn of the run: the calls it made, or the reply the checks judged."""

    calls: Sequence[Observation] = ()
    reply: str = ""
    verdict: Verdict | None = None
    steered_by: str = ""  # the policy that decided what this turn could do, if one did


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
    # The message replaces the turns since the task (the calls and results it restates), not follows them.
    restart: bool = False
    # False: the model did not stop calling on its own, so which result answers the task is unknown,
    # and no check confirms the answer of this turn (it may pass, unverified).
    confirmable: bool = True


class Policy:
    """A rule about what the run does next. Subclasses name the failure they prevent in their docstring."""

    name: ClassVar[str] = "policy"

    def __call__(self, run: RunSoFar) -> Next | None:
        raise NotImplementedError


def stuck(turn: Turn, evidence: Sequence[Observation]) -> bool:
    """Whether a turn asked for nothing new: its calls all repeated earlier ones, or it is a refused
    reply that writes, as text, only calls already made, and names no tool yet to call."""
    if turn.calls:
        return all(o.repeated for o in turn.calls)
    if turn.verdict is None or turn.verdict.passed or "names_an_uncalled_tool" in turn.verdict.rules:
        return False
    made = [o.call for o in evidence]
    written = written_calls(turn.reply)
    return bool(written) and all(call in made for call in written)


class RestateWhenStuck(Policy):
    """A turn whose calls all repeated earlier ones: the model does not move on in the conversation of
    calls and results. Qwen2.5-Coder-0.5B and 1.5B write the first call again after its result,
    whatever it returned, where a chain needs the next call ("What does a toaster cost in US dollars?"
    after the price in euros). The next turn reads the task afresh, what the tools found stated in it,
    as one user message in place of the turns since the task, with the tools: asked so, the 1.5B model
    names the next tool ("To convert this price to US dollars, we can use the `exchange_rate`
    function") or works the answer out ("34.5 × 3 = 103.5"). From then on each new result restates the
    task again, since the model has shown it will not move on after one; a turn it restated that asks
    for nothing new is AnswerWhenNothingNew's."""

    name = "restate_when_stuck"

    def __call__(self, run: RunSoFar) -> Next | None:
        last = run.turns[-1]
        if stuck(last, run.evidence):
            if last.steered_by == self.name:
                return None
            why = "the last turn asked for nothing new"
        elif any(t.steered_by == self.name for t in run.turns) and any(o.ok and not o.repeated for o in last.calls):
            why = "a new result since the task was restated"
        else:
            return None
        return Next(self.name, "auto", prompts.restated(run.task, run.evidence), why, restart=True)


class AnswerWhenNothingNew(Policy):
    """A turn that asked for nothing new (`stuck`; a repeated call is not run again: its earlier result
    comes back), after RestateWhenStuck has had its turn. Shown the tools once more, Qwen2.5-Coder-0.5B
    writes the same call a third time as text. The next turn answers, with no tools, the task and what
    the tools found in one user message in place of the turns since the task: after those turns the
    1.5B model stated a toaster's price in euros as its price in dollars, asked afresh it worked out
    41.25 * 1.08 step by step."""

    name = "answer_when_nothing_new"

    def __call__(self, run: RunSoFar) -> Next | None:
        if not stuck(run.turns[-1], run.evidence):
            return None
        return Next(self.name, "none", prompts.answer_now(run.task, run.evidence), "the last turn asked for nothing new",
                    restart=True)


class AnswerWhenNoToolWorks(Policy):
    """Calls that all fail, two or more and none that worked, or one after which the model answered from
    it in its own words (the check NotOnlyErrors; the error itself written again is NotTheSameRefusal's:
    a call with a better argument follows): the tools do not serve the task. For "¿Cuál es la capital de
    Francia?" Qwen2.5-Coder-1.5B called get_forecast("Paris"), then wrote about adding a tool to the
    catalogue, and, forced to call, tried find_book("The Great Gatsby") and product_price("The Great
    Gatsby") until the budget ran out. The next turn answers with no tools, the task and the failed calls
    in one user message in place of the turns since the task; once in a run (a refused answer after it
    is the other policies')."""

    name = "answer_when_no_tool_works"

    def __call__(self, run: RunSoFar) -> Next | None:
        failed = [o for o in run.evidence if not o.ok]
        verdict = run.turns[-1].verdict
        answered_from_errors = (verdict is not None and NotOnlyErrors.name in verdict.rules
                                and NotAMessage.name not in verdict.rules)
        every_call_failed = bool(failed) and len(failed) == len(run.evidence)
        if (not (no_tool_worked(run.evidence) or (every_call_failed and answered_from_errors))
                or any(t.steered_by == self.name for t in run.turns)):
            return None
        return Next(self.name, "none", prompts.no_tool_worked(run.task, run.evidence), f"all {len(failed)} calls failed",
                    restart=True)


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
    step budget with no answer, and so would one that spends its turns repeating itself. The budget's
    last turn, when some call has succeeded, answers, with what the tools found in front of it, and no
    tools; it comes first, since after it there is no turn for anything another policy would ask. An
    answer after calls the budget cut short is not confirmed: the 0.5B model added 5678 to its last
    result five times for "What is 1234 + 5678?", and 29624, the last result, was no answer."""

    name = "answer_on_the_last_turn"

    def __call__(self, run: RunSoFar) -> Next | None:
        if run.turns_left != 1 or not any(o.ok for o in run.evidence):
            return None
        if not run.turns[-1].calls:  # a refused answer: the retry, its reasons in front of it (asked afresh, the same)
            return Next(self.name, "none", why="one turn of the budget is left")
        return Next(self.name, "none", prompts.answer_now(run.task, run.evidence), "one turn of the budget is left",
                    restart=True, confirmable=False)


DEFAULT: tuple[Policy, ...] = (AnswerOnTheLastTurn(), AnswerWhenNoToolWorks(), RestateWhenStuck(), AnswerWhenNothingNew(),
                               CallWhenAsked(), NotTheSameRefusal())


def next_turn(policies: Sequence[Policy], run: RunSoFar, can_call: bool) -> Next | None:
    """The first policy's say, or None. Without tools a policy cannot force a call."""
    for policy in policies:
        decision = policy(run)
        if decision is not None and (can_call or decision.tool_choice != "required"):
            return decision
    return None
