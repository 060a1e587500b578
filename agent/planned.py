"""The run with a plan first: plan, act, verify, with a replan when an answer fails its checks. The
path for models without a tool format of their own (their calls go through a JSON act schema), and
for any model with `Agent(plan=True)`. With check_grounding, what each act turn may call is
narrowed by what the run has seen (agent/offers.py)."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from agent import prompts
from agent.context import SHORT_OBSERVATION, shorten
from agent.conversation import tool_turn
from agent.events import ErrorEvent, Event, Final, PhaseStarted, PlanMade, Steered, Verdict
from agent.grounding import answer_in_hand, numbers, unused_task_numbers
from agent.offers import Observation, next_offer, no_tool_worked, parse_arguments
from agent.policies import AnswerWhenNoToolWorks
from agent.turns import (
    ANSWER_LINE,
    MAX_STRING,
    TEXT_ANSWER,
    TurnError,
    act_schema,
    answer_holding,
    answer_text,
    callable_tools,
    parse_json,
    parse_turn,
    plan_schema,
)
from backends import Constraint, Message
from backends.schemas import closed

if TYPE_CHECKING:
    from agent.loop import Agent


def plan_and_act(agent: Agent, task: str, previous: list[Message], memory_text: str, notes: list[str]) -> Iterator[Event]:
    """A plan (or a direct answer, checked like any), act turns until an answer, its verdict; a failed
    verdict sends the run back to plan once more (max_replans), the failed plan refused by grammar."""
    tool_names = ", ".join(s["function"]["name"] for s in agent.tools.schemas()) or "(none)"
    plan, direct = yield from make_plan(agent, [Message(role="user", content=prompts.PLAN.format(
        task=task, memory=memory_text, tools=tool_names, max_steps=agent.max_plan_steps))], replan=False, direct=True)
    shown_reasons: list[str] = []
    if direct is not None:  # the model answered at once: checked like any answer, else it plans after all
        yield PhaseStarted(phase="verify")
        verdict = unless_cut_off(agent, (yield from agent._verify(task, direct, [], notes)))
        yield verdict
        shown_reasons = list(verdict.reasons)
        if verdict.passed:
            yield Final(answer=verdict.answer, verified=verdict.verified)
            return
        plan, _ = yield from make_plan(agent, [Message(role="user", content=prompts.PLAN_AFTER_DIRECT.format(
            task=task, memory=memory_text, answer=direct, reasons=prompts.bullets(verdict.reasons),
            max_steps=agent.max_plan_steps))], replan=True)
    act = prompts.ACT_NATIVE if agent.native else prompts.ACT
    act_prompt = act.format(task=task, plan=prompts.numbered(plan), memory=memory_text,
                            tools=prompts.tool_lines(agent.tools.schemas()))
    conversation = [*previous, Message(role="user", content=act_prompt)]
    evidence: list[Observation] = []
    turns_used, replans, asked_without_tools = 0, 0, False
    while True:
        yield PhaseStarted(phase="act")
        # After a replan the first turn must find something new: a call, and none already made.
        answer, answer_only, new_calls_only = None, False, replans > 0
        while answer is None:
            if turns_used >= agent.max_steps:
                yield Final(answer=None, verified=False, reason=f"the step budget of {agent.max_steps} turns ran out")
                return
            turns_used += 1
            conversation, trims = agent._fit(conversation, keep_head=len(previous) + 1)
            yield from trims
            answer, answer_only = yield from act_turn(agent, task, notes, conversation, evidence, answer_only,
                                                            new_calls_only)
            new_calls_only = False
        from_knowledge = False
        if not asked_without_tools and no_tool_worked(evidence) and agent.output_type is None:
            asked_without_tools = True
            own_words = yield from answer_without_tools(agent, task, evidence, previous)
            answer, from_knowledge = own_words or answer, bool(own_words)
        yield PhaseStarted(phase="verify")
        verdict = yield from agent._verify(task, answer, evidence, notes, shown_reasons, from_knowledge)
        verdict = verdict if from_knowledge else unless_cut_off(agent, verdict)
        yield verdict
        shown_reasons += verdict.reasons
        if verdict.passed:
            yield Final(answer=verdict.answer, verified=verdict.verified)
            return
        if replans >= agent.max_replans:
            yield Final(answer=answer, verified=False, reason="verification failed: " + "; ".join(verdict.reasons))
            return
        replans += 1
        reasons = prompts.bullets(verdict.reasons)
        said = Message(role="assistant", content=answer if agent.native else json.dumps({"answer": answer}))
        found = "\n".join(shorten(o.line, SHORT_OBSERVATION) for o in evidence[-6:]) or "(no tools used yet)"
        replan = prompts.REPLAN.format(answer=answer, reasons=reasons, evidence=found)
        asked = [Message(role="user", content=act_prompt), said, Message(role="user", content=replan)]
        plan, _ = yield from make_plan(agent, asked, replan=True, avoid=[plan])
        if not conversation or conversation[-1].role != "assistant":  # an act turn's answer is there already
            conversation.append(said)
        replanned = prompts.REPLANNED.format(reasons=reasons, plan=prompts.numbered(plan))
        conversation.append(Message(role="user", content=replanned))


def unless_cut_off(agent: Agent, verdict: Verdict) -> Verdict:
    """The verdict, or a refusal (rule cut_off) where the checks passed an answer that ran to the bound of
    MAX_STRING characters the plan and act schemas set: it was cut off. Qwen2.5-Coder-0.5B's preamble "...is
    currently 9 degrees Celsius, so" passed, and was verified. A check that refuses it keeps its own reason (a
    preamble that names a tool to call is followed by that call); a typed answer has no such bound."""
    if not verdict.passed or agent.output_type is not None or len(verdict.answer) < MAX_STRING:
        return verdict
    return verdict.model_copy(update={"passed": False, "verified": False, "rules": ["cut_off"],
                                      "reasons": [prompts.CUT_OFF.format(limit=MAX_STRING)]})


def answer_without_tools(agent: Agent, task: str, evidence: list[Observation],
                         previous: list[Message] = ()) -> Generator[Event, None, str]:
    """The task asked afresh as its user asked it: the question alone, without the agent's system prompt,
    the tools or JSON (the tool conversation's AnswerWhenNoToolWorks, for a model without a tool format).
    Asked "How many minutes are there in two hours?" with eleven tools, SmolLM2 planned, called
    get_forecast("London") twice and answered "2" in the act schema; asked the question alone it says
    "Two hours is equal to 2 * 60 = 120 minutes." Shown the failed calls and told the tools cannot
    answer, it wrote that back ("The task is to find out ... The tools cannot answer this."), and under
    the agent's system prompt it divided by 24. `previous`: the conversation before the task, kept. An empty
    reply keeps the act answer."""
    yield Steered(policy=AnswerWhenNoToolWorks.name, tool_choice="none", why=f"all {len(evidence)} calls failed")
    yield PhaseStarted(phase="act")
    text, _ = yield from agent._generate([*previous, Message(role="user", content=task)], Constraint(regex=TEXT_ANSWER),
                                         "act", plain=True)
    return text.strip()


def make_plan(agent: Agent, messages: list[Message], replan: bool, direct: bool = False,
              avoid: list[list[str]] = ()) -> Generator[Event, None, tuple[list[str], str | None]]:
    """(the plan's steps, or a direct answer when `direct` lets the model answer at once).

    avoid: plans that failed; the grammar refuses them."""
    yield PhaseStarted(phase="plan")
    schema = plan_schema(agent.max_plan_steps, direct=direct, avoid=avoid)
    text, _ = yield from agent._generate(messages, Constraint(json_schema=schema), "plan")
    try:
        data = parse_json(text)
        steps = [str(s) for s in data.get("steps", [])][: agent.max_plan_steps]
    except (TurnError, AttributeError):
        data, steps = {}, []
    if direct and "answer" in data and not steps:
        yield PlanMade(steps=[], replan=replan, direct=True)
        return [], answer_text(data["answer"])
    if not steps:
        yield ErrorEvent(message="the plan could not be read; acting without one")
    yield PlanMade(steps=steps, replan=replan)
    return steps, None


def act_turn(agent: Agent, task: str, notes: list[str], conversation: list[Message], evidence: list[Observation],
             answer_only: bool, new_calls_only: bool = False) -> Generator[Event, None, tuple[str | None, bool]]:
    """One model turn: runs the tool calls it asks for, or returns its answer.

    Returns (answer or None, whether the next turn may only answer): it must when every call
    repeated an earlier one (nothing new was learnt), or when the answer is in hand
    (grounding.answer_in_hand: a quantity computed from all the task's numbers).
    """
    messages = conversation
    if answer_only:  # put what worked in front of the model as it writes the answer
        messages = [*conversation, Message(role="user", content=prompts.answer_now(task, evidence))]
    offer = next_offer(agent.tools, task, notes, evidence, grounded=agent.check_grounding, answer_only=answer_only,
                       new_calls_only=new_calls_only)
    if agent.native:
        offered = callable_tools(offer.tools, offer.made)
        choice = "required" if offer.must_call and offered else "auto" if offered else "none"
        text, calls = yield from agent._generate(messages, native_answer(agent, offer.held), "act", tool_choice=choice,
                                                offered=offered)
        if not calls:
            if text.strip():
                conversation.append(Message(role="assistant", content=text))
            return text.strip() or None, False
        requested = [(c.name, parse_arguments(c.arguments)) for c in calls]
    else:
        schema = act_turn_schema(agent, offer.tools, offer.made, offer.must_call, offer.held)
        text, _ = yield from agent._generate(messages, Constraint(json_schema=schema), "act")
        try:
            turn = parse_turn(text)
        except TurnError as exc:
            yield ErrorEvent(message=f"could not read the reply: {exc}")
            conversation += [Message(role="assistant", content=text),
                             Message(role="user", content=prompts.PARSE_ERROR.format(error=exc))]
            return None, False
        if turn.answer is not None:
            conversation.append(Message(role="assistant", content=text))
            return turn.answer, False
        requested = turn.calls
    calls = yield from agent._run_calls(requested, evidence)
    if agent.native:  # results go back in the template's own tool role
        conversation += tool_turn(calls, evidence)
    else:
        observed = [(name, args, o.shown) for (_, name, args), o in zip(calls, evidence[-len(calls):])]
        observation = prompts.OBSERVATION.format(results=prompts.results_block(observed))
        ok_calls = [(o.arguments, o.shown) for o in evidence if o.ok]
        if agent.check_grounding and any(numbers(a) for a, _ in ok_calls) and (left := unused_task_numbers(task, ok_calls)):
            observation += prompts.NUMBERS_LEFT.format(numbers=", ".join(f"{n:g}" for n in left))
        conversation += [Message(role="assistant", content=text), Message(role="user", content=observation)]
    in_hand = agent.check_grounding and answer_in_hand(task, [(o.arguments, o.shown) for o in evidence if o.ok])
    return None, in_hand or all(o.repeated for o in evidence[-len(calls):])


def act_turn_schema(agent: Agent, tools: list[dict[str, Any]], made: list[tuple[str, dict[str, Any]]] = (),
                must_call: bool = False, held: str | None = None) -> dict[str, Any]:
    """held: a result that answers the task (grounding.answer_in_hand), which the answer must give."""
    schema = act_schema(tools, agent.max_parallel_calls, made, must_call)
    for option in schema["anyOf"]:  # the answer itself must be the typed object
        if agent.output_type is not None and "answer" in option["properties"]:
            option["properties"]["answer"] = closed(agent.output_type.model_json_schema())
        elif held is not None and "answer" in option["properties"]:
            option["properties"]["answer"] = answer_holding(held)
    return schema


def native_answer(agent: Agent, held: str | None = None) -> Constraint:
    """What a native act turn's answer must be: the typed object, or a line of text (as in the JSON schema)."""
    return agent._typed_answer() or Constraint(regex=ANSWER_LINE if held is None else answer_holding(held, anchored=False))
