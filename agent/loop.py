"""The agent: its public API (run, stream, arun, astream), and the parts both ways of running share
(model calls, tool calls, verification, the context budget). The ways themselves are
agent/conversation.py (a model with its own tool format) and agent/planned.py (plan, act, verify)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ValidationError

from agent import checks as answer_checks
from agent import policies as answer_policies
from agent import prompts
from agent.checks import Check, Evidence, judge
from agent.context import SHORT_OBSERVATION, ContextOverflow, fit, shorten
from agent.conversation import converse
from agent.events import (
    ContextTrimmed,
    ErrorEvent,
    Event,
    Final,
    MemoryRecalled,
    ModelReplied,
    Phase,
    PlanMade,
    RunStarted,
    TokenChosen,
    ToolCalled,
    ToolReturned,
    Verdict,
)
from agent.offers import Observation, looping
from agent.planned import plan_and_act
from agent.policies import Policy
from agent.turns import (
    VERDICT_SCHEMA,
    TurnError,
    parse_json,
)
from backends import Backend, BackendError, Constraint, GenerationRequest, Message, SamplingParams, ToolCall
from backends.schemas import closed, explain_validation
from memory.protocols import MemoryLike
from tools import Tool, ToolRegistry
from tools.registry import Approver, ToolResult

Verifier = Callable[[str], bool | str | Sequence[str] | None]  # True/None pass; False, a reason or reasons fail
MAX_MENDS = 5  # faults the checks may put right in one answer, one at a time


class RunResult(BaseModel):
    answer: str | None
    verified: bool
    plan: list[str]
    events: list[Event]
    messages: list[Message]  # the conversation so far, to continue with run(task, messages=...)
    run_id: str | None = None
    reason: str = ""


def _reasons(outcome: bool | str | Sequence[str] | None) -> list[str]:
    if outcome is None or outcome is True:
        return []
    if outcome is False:
        return ["a check failed"]
    return [outcome] if isinstance(outcome, str) else list(outcome)


class Agent:
    """Plans, acts with tools, verifies its answer; `stream` yields every step as a typed event.

    Args:
        backend: the model, any Backend (`load_backend("local")`, "openai", "scripted", a plugin).
        tools: a ToolRegistry, or tools and plain functions to build one from.
        memory: recalled before planning (`search`), and where runs are logged (`traces`); None for neither.
        system_prompt: the system message of every model call (default: prompts.SYSTEM).
        max_steps: act turns per run, tool turns and answers together.
        max_replans: how often a failed verification may send the agent back to plan.
        verifiers: checks of the answer: each returns True/None (pass), or False, a reason or reasons (fail).
        output_type: a pydantic model the answer must be, as JSON.
        approver: asks before a tool that needs approval runs (default: the registry's).
        sampling: for every model call (default: greedy, 300 tokens, 5 alternatives per token).
        constrain: force plans, calls and verdicts by grammar (default: when the backend supports constraints).
        model_verify: after the checks pass an answer, ask the model for a verdict too (default: off). Its verdict
            may refuse an answer but never makes it verified alone: SmolLM2's refused no answer on either evaluation
            (it passed all 25 it judged on the first; on the second, the 10 wrong answers that ended runs
            too), so by default no model call is spent on it: a tool-free question takes one on either path.
        checks: rules an answer must pass, each a named part (agent/checks.py); default checks.DEFAULT in
            the tool conversation, checks.SMALL_MODEL on the plan -> act path with check_grounding.
        policies: what the tool conversation does next after each turn, each a named part (agent/policies.py);
            default policies.DEFAULT. The plan -> act path's own are check_grounding's offers.
        check_grounding: on the plan -> act path, narrow what each act turn may call by what the run has
            seen (agent/offers.py), and check answers with checks.SMALL_MODEL unless `checks` is given.
        plan: plan before acting (default: without a native tool format, yes; with one, no: on
            Qwen2.5-Coder-0.5B a plan turn solved fewer tasks, see docs/agent.md).
        max_plan_steps: at most this many plan steps.
        max_parallel_calls: tool calls one act turn may make; independent calls run at once.
        recall_k: memory hits recalled for the task (0: none; the memory then only records the run).
        native_tools: act through the model's own tool-call format (default: when the backend's model has one);
            without a plan, the run is then the tool conversation the model was trained on: the task, its
            calls, their results in the tool role, its answer.
    """

    def __init__(
        self,
        backend: Backend,
        tools: ToolRegistry | Iterable[Tool | Callable[..., Any]] = (),
        *,
        memory: MemoryLike | None = None,
        system_prompt: str | None = None,
        max_steps: int = 6,
        max_replans: int = 1,
        verifiers: Sequence[Verifier] = (),
        output_type: type[BaseModel] | None = None,
        approver: Approver | None = None,
        sampling: SamplingParams | None = None,
        constrain: bool | None = None,
        model_verify: bool = False,
        checks: Sequence[Check] | None = None,
        check_grounding: bool = True,
        policies: Sequence[Policy] | None = None,
        plan: bool | None = None,
        max_plan_steps: int = 5,
        max_parallel_calls: int = 1,
        recall_k: int = 3,
        native_tools: bool | None = None,
    ) -> None:
        self.backend = backend
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        if approver is not None:
            self.tools.approver = approver
        self.memory = memory
        self.system_prompt = system_prompt or prompts.SYSTEM
        self.max_steps, self.max_replans, self.max_plan_steps = max_steps, max_replans, max_plan_steps
        self.verifiers, self.output_type = list(verifiers), output_type
        self.sampling = sampling or SamplingParams(temperature=0.0, max_tokens=300, logprobs=5)
        self.constrain = backend.supports_constraints if constrain is None else constrain
        self.recall_k, self.max_parallel_calls = recall_k, max_parallel_calls
        # The act turn in the model's own tool-call format when its chat template has one (the
        # model sees its tools as it was trained to); otherwise the JSON act schema.
        self.native = backend.native_tool_calls if native_tools is None else native_tools
        if plan is False and not self.native:
            raise ValueError("plan=False needs a model with its own tool-call format (native_tools); "
                             "on the JSON act schema the agent always plans")
        self.plan = not self.native if plan is None else plan
        conversing = self.native and not self.plan
        self.check_grounding = check_grounding and not conversing
        self.model_verify = model_verify
        small = answer_checks.SMALL_MODEL if self.check_grounding else answer_checks.DEFAULT
        self.checks = list(small if checks is None else checks)
        self.policies = list(answer_policies.DEFAULT if policies is None else policies)

    # public API

    def run(self, task: str, messages: Sequence[Message] = ()) -> RunResult:
        events = list(self.stream(task, messages))
        final = next(e for e in reversed(events) if isinstance(e, Final))
        plans = [e.steps for e in events if isinstance(e, PlanMade)]
        started = events[0]
        history = [*messages, Message(role="user", content=task)]
        if final.answer is not None:
            history.append(Message(role="assistant", content=final.answer))
        return RunResult(answer=final.answer, verified=final.verified, plan=plans[-1] if plans else [], events=events,
                         messages=history, run_id=started.run_id if isinstance(started, RunStarted) else None,
                         reason=final.reason)

    def stream(self, task: str, messages: Sequence[Message] = ()) -> Iterator[Event]:
        """The run as events; the last is always Final. Traces go to memory when one is attached."""
        traces = self.memory.traces if self.memory is not None else None
        run_id = traces.start(task, self.backend.name, self.backend.model_name) if traces else None
        final: Final | None = None
        try:
            for event in self._run(task, list(messages), run_id):
                if traces:
                    traces.log(run_id, event)
                final = event if isinstance(event, Final) else final
                yield event
        except (BackendError, ContextOverflow) as exc:
            error, final = ErrorEvent(message=str(exc), recoverable=False), Final(answer=None, verified=False, reason=str(exc))
            for event in (error, final):
                if traces:
                    traces.log(run_id, event)
                yield event
        finally:  # a run stopped part way (Ctrl+C, a consumer that stopped reading) is recorded as such
            stopping = sys.exc_info()[1] is not None
            try:
                if traces and final is not None:
                    traces.finish(run_id, "verified" if final.verified else "done" if final.answer else "failed",
                                  final.answer, final.verified)
                elif traces:
                    traces.finish(run_id, "interrupted")
            except Exception:
                if not stopping:
                    raise  # else the log's failure must not replace the Ctrl+C or error that stopped the run

    def run_many(self, tasks: Sequence[str], concurrency: int | None = None) -> list[RunResult]:
        """Each task's result, in the order of `tasks`; `concurrency` runs at a time, by default as many as the
        backend decodes together (`LocalBackend(parallel=N)`), so that their model calls share each step."""
        workers = concurrency or max(1, int(getattr(self.backend, "parallel", 1) or 1))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokentrail-run") as pool:
            return list(pool.map(self.run, tasks))

    async def arun(self, task: str, messages: Sequence[Message] = ()) -> RunResult:
        return await asyncio.to_thread(self.run, task, messages)

    async def astream(self, task: str, messages: Sequence[Message] = ()) -> AsyncIterator[Event]:
        loop, queue, done = asyncio.get_running_loop(), asyncio.Queue(), object()

        def produce() -> None:
            try:
                for event in self.stream(task, messages):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as exc:  # delivered to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, done)

        threading.Thread(target=produce, daemon=True).start()
        while (item := await queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item

    # the loop

    def _run(self, task: str, previous: list[Message], run_id: str | None) -> Iterator[Event]:
        yield RunStarted(task=task, run_id=run_id, backend=self.backend.name)
        hits: list[dict[str, Any]] = []
        if self.memory is not None and self.recall_k > 0:
            try:
                found = self.memory.search(task, k=self.recall_k)
            except (RuntimeError, ValueError) as exc:  # a memory it cannot search (another embedder's vectors): run without
                found = []
                yield ErrorEvent(message=f"memory recall failed, going on without it: {exc}", recoverable=True)
            hits = [{"chunk_id": h.chunk_id, "source": h.source, "score": h.score, "text": h.text, "why": h.why.describe()}
                    for h in found]
            yield MemoryRecalled(hits=hits)
        memory_text, notes = prompts.memory_block(hits), [h["text"] for h in hits]
        run = plan_and_act if self.plan else converse
        yield from run(self, task, previous, memory_text, notes)

    def _typed_answer(self) -> Constraint | None:
        """The typed object when there is an output_type; else None: the model answers as it would, in any script."""
        if self.output_type is None:
            return None
        return Constraint(json_schema=closed(self.output_type.model_json_schema()))

    def _run_calls(self, requested: list[tuple[str, dict[str, Any]]], evidence: list[Observation]
                   ) -> Generator[Event, None, list[tuple[str, str, dict[str, Any]]]]:
        """Runs the calls a turn asked for (each distinct one once, at most max_parallel_calls, at once);
        their observations go onto `evidence`. Returns (id, name, arguments) of each call that ran."""
        unique = list({json.dumps([name, args], sort_keys=True): (name, args) for name, args in requested}.values())
        if len(unique) > self.max_parallel_calls:  # unconstrained backends may write more than the grammar allows
            yield ErrorEvent(message=f"only the first {self.max_parallel_calls} of {len(unique)} calls ran")
            unique = unique[: self.max_parallel_calls]
        calls = [(f"call_{len(evidence) + i + 1}", name, args) for i, (name, args) in enumerate(unique)]
        for call_id, name, args in calls:
            yield ToolCalled(id=call_id, name=name, arguments=args)
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:  # independent calls run at once
            results = list(pool.map(lambda c: self._call(c[1], c[2], evidence), calls))
        for (call_id, name, args), (result, repeated) in zip(calls, results):
            yield ToolReturned(id=call_id, name=name, ok=result.ok, output=result.output, error=result.error,
                               duration=result.duration)
            shown = result.output if result.ok else f"error: {result.error}"
            evidence.append(Observation(name, json.dumps(args), shown, result.ok, repeated))
        return calls

    def _call(self, name: str, args: dict[str, Any], evidence: list[Observation]) -> tuple[ToolResult, bool]:
        """Runs a tool, unless this exact call already ran or its arguments loop (a small model can loop on one call,
        or within one).

        Returns the result and whether it repeated an earlier call.
        """
        arguments = json.dumps(args)
        earlier = next((o for o in evidence if o.name == name and o.arguments == arguments), None)
        if earlier is not None:
            return ToolResult(ok=False, error=prompts.REPEATED_CALL.format(result=earlier.shown)), True
        if loop := looping(args):  # not run: a number from such a call would read as evidence
            return ToolResult(ok=False, error=prompts.LOOPING_CALL.format(unit=loop[0], times=loop[1])), False
        return self.tools.call(name, args), False

    def _verify(self, task: str, answer: str, evidence: list[Observation], notes: list[str],
                shown_reasons: Sequence[str] = (), from_knowledge: bool = False) -> Generator[Event, None, Verdict]:
        """shown_reasons: what earlier failed checks told the model (an answer must not parrot them).
        from_knowledge: the answer was asked for from what the model knows (every call failed), so the checks
        that hold an answer to the evidence (`Check.holds_to_evidence`) are left out."""
        reasons, rules, mended_by, model_answer = [], [], [], answer
        confirmed = call_next = False
        if self.output_type is None:
            seen = Evidence(task, evidence, notes, shown_reasons, self.tools.schemas())
            checks = [c for c in self.checks if not (from_knowledge and c.holds_to_evidence)]
            judgement = first = judge(checks, answer, seen)
            while (mend := judgement.mended) is not None and len(mended_by) < MAX_MENDS:  # one fault a round, judged again
                mended_by.append(mend.rule)
                answer = mend.mended
                judgement = judge(checks, answer, seen)
            if not judgement.passed:  # the model's answer goes back with what is wrong in it, not a half-mended one
                answer, mended_by, judgement = model_answer, [], first
            reasons += [f.reason for f in judgement.refusals]
            rules += [f.rule for f in judgement.refusals]
            confirmed, call_next = judgement.verified, any(f.call_next for f in judgement.refusals)
        reasons += [r for check in self.verifiers for r in _reasons(check(answer))]
        rules += ["verifier"] * (len(reasons) - len(rules))
        if self.output_type is not None:
            try:
                self.output_type.model_validate_json(answer)
                confirmed = True
            except ValidationError as exc:
                reasons.append(f"the answer must be JSON for {self.output_type.__name__}: {explain_validation(exc)}")
                rules.append("output_type")
        mending = {"mended_by": list(dict.fromkeys(mended_by)), "model_answer": model_answer if mended_by else None}
        if reasons or not self.model_verify:
            return Verdict(passed=not reasons, reasons=reasons, by="checks", answer=answer, rules=list(dict.fromkeys(rules)),
                           verified=not reasons and (confirmed or bool(self.verifiers)), call_next=call_next, **mending)
        shown = "\n".join(shorten(o.line, SHORT_OBSERVATION) for o in evidence[-6:])
        prompt = prompts.VERIFY.format(task=task, answer=answer, evidence=shown or "(no tools used)")
        text, _ = yield from self._generate([Message(role="user", content=prompt)], Constraint(json_schema=VERDICT_SCHEMA),
                                            "verify")
        try:
            data = parse_json(text)
            passed = bool(data.get("passed"))
            return Verdict(passed=passed, reasons=[str(r) for r in data.get("reasons", [])], by="model", answer=answer,
                           rules=[] if passed else ["model_verdict"], **mending,
                           verified=passed and (confirmed or bool(self.verifiers)))
        except (TurnError, AttributeError):
            return Verdict(passed=False, reasons=["the check's reply could not be read"], by="model", answer=answer,
                           rules=["model_verdict"], **mending)

    def _request(self, messages: list[Message], constraint: Constraint | None, tool_choice: str | None = None,
                 offered: list[dict[str, Any]] | None = None, plain: bool = False) -> GenerationRequest:
        """plain: as a user asks, without the agent's own system prompt (a system prompt you gave stays)."""
        tools = {"tools": self.tools.schemas(), "tool_choice": tool_choice, "callable_tools": offered,
                 "parallel_tool_calls": self.max_parallel_calls > 1} if tool_choice and self.tools.schemas() else {}
        system = [] if plain and self.system_prompt == prompts.SYSTEM else [Message(role="system", content=self.system_prompt)]
        return GenerationRequest(messages=[*system, *messages],
                                 sampling=self.sampling, **tools,
                                 constraint=constraint if self.constrain else None)

    def _generate(self, messages: list[Message], constraint: Constraint | None, phase: Phase,
                  tool_choice: str | None = None, offered: list[dict[str, Any]] | None = None, plain: bool = False,
                  ) -> Generator[Event, None, tuple[str, list[ToolCall]]]:
        """(the reply's text, the tool calls it made in the model's own format).

        tool_choice: None for the JSON act schema; "auto", "required" or "none" offers the tools natively,
        `offered` (narrower) the calls the grammar allows. plain: see _request."""
        parts, calls = [], []
        request = self._request(messages, constraint, tool_choice, offered, plain)
        for token in self.backend.stream(request):
            parts.append(token.text)
            calls = token.tool_calls or calls
            yield TokenChosen(phase=phase, text=token.text, token=token.token, token_id=token.token_id,
                              logprob=token.logprob, top_logprobs=token.top_logprobs, top_token_ids=token.top_token_ids,
                              attention=token.attention,
                              prompt_tokens=token.prompt_tokens)
        text = "".join(parts)
        reply = Message(role="assistant", content=text if text or not calls else None, tool_calls=calls or None)
        yield ModelReplied(phase=phase, messages=request.messages, reply=reply, request=request)
        if self.native and phase == "act" and self.output_type is not None and text.strip().startswith("{"):
            return text, calls  # the typed answer as its own JSON
        if phase == "act" and self.output_type is not None and self.constrain:
            data = parse_json(text)  # the constrained answer is an object: hand it on as JSON text
            if isinstance(data.get("answer"), (dict, list)):
                text = json.dumps({"answer": json.dumps(data["answer"])})
        return text, calls

    def _fit(self, conversation: list[Message], keep_head: int) -> tuple[list[Message], list[ContextTrimmed]]:
        system = Message(role="system", content=self.system_prompt)
        limit = self.backend.context_window - self.sampling.max_tokens

        def count(messages: list[Message]) -> int:
            counter = getattr(self.backend, "count_prompt", None)
            if counter is not None:  # as the backend will build it, tools and tool-call turns included
                return counter(self._request(messages, None, "none" if self.native else None))
            return len(self.backend.tokenizer.encode(self.backend.render([system, *messages])))

        return fit(conversation, count, limit, keep_head=keep_head)

