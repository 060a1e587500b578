"""The run on a model with its own tool format, without a plan: the tool conversation the model
was trained on. The task as the user's message, the model's calls (in its format, or a new one
written as JSON among its words), their results in the tool role,
until a reply without calls, which the checks judge (agent/checks.py). A refused reply goes back
to the model with the reasons, as a retry prompt; what the next turn may do after each turn is
the policies' say (agent/policies.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agent import prompts
from agent.checks import code_calls, written_calls
from agent.events import Event, Final, PhaseStarted, Steered
from agent.offers import Observation, parse_arguments
from agent.policies import Choice, Next, RunSoFar, Turn, next_turn
from agent.turns import TEXT_ANSWER
from backends import Constraint, Message, ToolCall
from tools.tool import ArgumentsError

if TYPE_CHECKING:
    from agent.loop import Agent


def tool_turn(calls: list[tuple[str, str, dict[str, Any]]], evidence: list[Observation]) -> list[Message]:
    """The assistant's calls and their results in the tool role, as chat templates render them."""
    shown = [o.shown for o in evidence[-len(calls):]]
    return [Message(role="assistant", tool_calls=[ToolCall.create(i, n, a) for i, n, a in calls]),
            *(Message(role="tool", tool_call_id=i, content=text) for (i, _, _), text in zip(calls, shown))]


def written_new_calls(agent: Agent, text: str, evidence: list[Observation]) -> list[tuple[str, dict[str, Any]]]:
    """The first calls a reply writes among its words, as JSON or as code (`add_days("2026-12-01", 100)`),
    that are new and valid for their tool (at most max_parallel_calls). Qwen2.5-Coder-1.5B writes its
    next call so, with words after it ("This will return the date 100 days after..."), where the engine
    reads no call; refused and forced to call, it wrote another call, or the same text again."""
    made = [o.call for o in evidence]
    found: list[tuple[str, dict[str, Any]]] = []
    for name, arguments in [*written_calls(text, agent.tools.names()), *code_calls(text, agent.tools.schemas())]:
        try:
            agent.tools.get(name).validate(arguments)
        except (ValidationError, ArgumentsError):
            continue
        if (name, arguments) not in made and (name, arguments) not in found:
            found.append((name, arguments))
    return found[: agent.max_parallel_calls]


def converse(agent: Agent, task: str, previous: list[Message], memory_text: str, notes: list[str]) -> Iterator[Event]:
    """Turns until an answer the checks pass or the step budget; every turn, a call or a reply, counts."""
    def asking(text: str) -> list[Message]:
        return [*previous, Message(role="user", content=f"{memory_text}\n\n{text}" if memory_text else text)]

    conversation = asking(task)
    evidence: list[Observation] = []
    turns: list[Turn] = []
    said: list[str] = []  # the reasons of refusals so far: an answer must not parrot them
    can_call = bool(agent.tools.schemas())
    steer: Next | None = None  # what the policies said this turn may do
    for turns_left in range(agent.max_steps - 1, -1, -1):
        choice: Choice | None = (steer.tool_choice if steer else "auto") if can_call else None
        steered_by = steer.policy if steer else ""
        yield PhaseStarted(phase="act")
        conversation, trims = agent._fit(conversation, keep_head=len(previous) + 1)
        yield from trims
        # An answer turn ("none") leaves the tools out of the prompt: a small model shown them goes on calling,
        # and without them writes the call as text (Qwen2.5-Coder-0.5B), which the grammar then refuses.
        answer = agent._typed_answer() or (Constraint(regex=TEXT_ANSWER) if choice == "none" else None)
        text, calls = yield from agent._generate(conversation, answer, "act", tool_choice=None if choice == "none" else choice)
        requested = [(c.name, parse_arguments(c.arguments)) for c in calls]
        if not calls and choice not in (None, "none"):
            requested = written_new_calls(agent, text, evidence)
        if requested:
            ran = yield from agent._run_calls(requested, evidence)
            # Only the calls: kept with the words before them ("Here's how you can do it: ```json..."), the result
            # read to Qwen2.5-Coder-1.5B as the user's, and it answered "Thank you for providing the response."
            conversation += tool_turn(ran, evidence)
            turns.append(Turn(calls=evidence[-len(ran):], steered_by=steered_by))
        else:
            yield PhaseStarted(phase="verify")
            verdict = yield from agent._verify(task, text.strip(), evidence, notes, said)
            if steer is not None and not steer.confirmable:
                verdict = verdict.model_copy(update={"verified": False})
            yield verdict
            if verdict.passed:
                yield Final(answer=verdict.answer, verified=verdict.verified)
                return
            said += verdict.reasons
            conversation += [Message(role="assistant", content=text),
                             Message(role="user", content=prompts.REFUSED.format(reasons=prompts.bullets(verdict.reasons)))]
            turns.append(Turn(reply=text, verdict=verdict, steered_by=steered_by))
        steer = next_turn(agent.policies, RunSoFar(task, turns, evidence, turns_left), can_call) if turns_left else None
        if steer is not None:
            yield Steered(policy=steer.policy, tool_choice=steer.tool_choice, why=steer.why)
            if steer.restart:
                conversation = asking(steer.message or task)
            elif steer.message:
                conversation.append(Message(role="user", content=steer.message))
    yield Final(answer=None, verified=False, reason=f"the step budget of {agent.max_steps} turns ran out")
