"""Every path of the loop, with the scripted backend: the event sequences are checked."""

import json

import pytest
from pydantic import BaseModel

from agent import Agent
from backends import Message
from backends.scripted import ScriptedBackend
from tests.fixtures.grammar import admits, admits_text
from tools import ToolRegistry, tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


def plan(*steps):
    return json.dumps({"steps": list(steps)})


def calls(*pairs):
    return json.dumps({"tool_calls": [{"name": n, "arguments": a} for n, a in pairs]})


def answer(text):
    return json.dumps({"answer": text})


def verdict(passed, *reasons):
    return json.dumps({"passed": passed, "reasons": list(reasons)})


def kinds(events):
    return [e.type if e.type != "phase" else f"phase:{e.phase}" for e in events if e.type not in ("token", "model_reply")]


def test_plan_tool_call_answer_verified():
    backend = ScriptedBackend(replies=[plan("Add the numbers"), calls(("add", {"a": 2, "b": 3})), answer("5")])
    result = Agent(backend, tools=[add]).run("What is 2 + 3?")
    assert kinds(result.events) == [
        "run_started", "phase:plan", "plan", "phase:act", "tool_call", "tool_result", "phase:verify", "verdict", "final"]
    assert result.answer == "5" and result.verified and result.plan == ["Add the numbers"]
    tool_result = next(e for e in result.events if e.type == "tool_result")
    assert tool_result.ok and tool_result.output == "5"
    assert any(e.type == "token" and e.phase == "act" for e in result.events)  # decoding is streamed too
    observation, nudge = (m.content for m in backend.requests[2].messages[-2:])
    assert "add" in observation and "-> 5" in observation
    assert "add({\"a\": 2, \"b\": 3}) -> 5" in nudge  # a quantity computed from all the task's numbers: the answer is in hand


def test_tool_error_then_recovery():
    backend = ScriptedBackend(replies=[
        plan("Divide"), calls(("divide", {"a": 1, "b": 0})), calls(("divide", {"a": 1, "b": 4})), answer("0.25")])
    result = Agent(backend, tools=[divide]).run("What is 1/4?")
    results = [e for e in result.events if e.type == "tool_result"]
    assert [r.ok for r in results] == [False, True]
    assert "ZeroDivisionError" in results[0].error
    assert "ZeroDivisionError" in backend.requests[2].messages[-1].content  # the error went back to the model
    assert result.answer == "0.25" and result.verified


def test_parallel_calls_in_one_turn():
    backend = ScriptedBackend(replies=[
        plan("Add both"), calls(("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 2})), answer("2 and 4")])
    result = Agent(backend, tools=[add], max_parallel_calls=2).run("1+1 and 2+2?")
    assert kinds(result.events)[3:8] == ["phase:act", "tool_call", "tool_call", "tool_result", "tool_result"]
    assert [e.output for e in result.events if e.type == "tool_result"] == ["2", "4"]


def test_calls_beyond_the_limit_do_not_run():
    backend = ScriptedBackend(replies=[
        plan("Add"), calls(("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 2})), answer("2")])
    result = Agent(backend, tools=[add]).run("1+1")  # one call per turn by default
    assert [e.output for e in result.events if e.type == "tool_result"] == ["2"]
    assert any(e.type == "error" and "first 1 of 2 calls" in e.message for e in result.events)


def test_unreadable_reply_is_fed_back():
    backend = ScriptedBackend(replies=[plan("Think"), '{"tool_calls": [oops', answer("done")])
    result = Agent(backend, tools=[add]).run("task")
    assert "error" in kinds(result.events)
    assert "not valid" in backend.requests[2].messages[-1].content
    assert result.answer == "done"


def test_repairs_small_model_json():
    backend = ScriptedBackend(replies=[
        plan("Add"), "Sure! ```json\n{'tool_calls': [{'name': 'add', 'arguments': {'a': 1, 'b': 2},}]}\n```",
        "The answer is 3."])
    result = Agent(backend, tools=[add]).run("1+2?")
    assert next(e for e in result.events if e.type == "tool_result").output == "3"
    assert result.answer == "The answer is 3."  # plain text without JSON is taken as the answer


def test_verify_fail_then_replan():
    backend = ScriptedBackend(replies=[
        plan("Guess"), answer("7"),  # a number nothing produced: the grounding checks fail it, no model verdict
        plan("Use the add tool"), calls(("add", {"a": 2, "b": 3})), answer("5")])
    result = Agent(backend, tools=[add], max_replans=1).run("What is 2 + 3?")
    sequence = kinds(result.events)
    assert sequence.count("verdict") == 2 and sequence.count("plan") == 2
    first = next(e for e in result.events if e.type == "verdict")
    assert first.by == "checks" and "The number 7 appears in no tool result" in first.reasons[0]
    replanned = [e for e in result.events if e.type == "plan"][1]
    assert replanned.replan and replanned.steps == ["Use the add tool"]
    assert "The number 7 appears in no tool result" in backend.requests[2].messages[-1].content
    assert result.answer == "5" and result.verified
    for request in backend.requests:  # the failed answer is in the conversation once (chat templates and training need turns)
        roles = [m.role for m in request.messages]
        assert not any(a == b == "assistant" for a, b in zip(roles, roles[1:])), roles


def test_a_replan_must_change_the_plan_and_find_something_new_first():
    backend = ScriptedBackend(replies=[
        plan("Add the numbers"), calls(("add", {"a": 2, "b": 2})), answer("4"),  # the task's 3 never used
        plan("Add the right numbers"), calls(("add", {"a": 2, "b": 3})), answer("5")])
    result = Agent(backend, tools=[add], max_replans=1, constrain=True).run("What is 2 + 3?")  # the schemas are sent
    assert result.answer == "5" and result.verified
    replan_request, act_after_replan = backend.requests[3], backend.requests[4]
    shown = replan_request.messages[-1].content  # the failed answer, why it failed, and what the tools found
    assert '"4"' in shown and "3 is not used yet" in shown and 'add({"a": 2, "b": 2}) -> 4' in shown
    replan_schema = replan_request.constraint.json_schema
    assert not admits(replan_schema, {"steps": ["Add the numbers"]})  # the plan that failed
    assert admits(replan_schema, {"steps": ["Add the right numbers"]})
    assert admits(replan_schema, {"steps": ["Add the numbers", "Check the sum"]})
    act_schema = act_after_replan.constraint.json_schema
    assert not admits(act_schema, {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 2}}]})
    assert admits(act_schema, {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]})
    assert not admits(act_schema, {"answer": 5})  # no answer before something new was found
    in_hand = backend.requests[5].constraint.json_schema  # 5 was computed from 2 and 3: the next turn only answers
    assert admits(in_hand, {"answer": 5})
    assert not admits(in_hand, {"tool_calls": [{"name": "add", "arguments": {"a": 5, "b": 0}}]})


def test_the_calculator_may_only_use_numbers_the_run_has_seen(tmp_path):
    calculator = ToolRegistry.with_builtins(tmp_path).get("calculator")

    @tool
    def lookup(number: int) -> str:
        """What is known about a number."""
        return "nothing"

    backend = ScriptedBackend(replies=[
        plan("Add, then multiply"), calls(("calculator", {"expression": "17 + 25"})),
        calls(("calculator", {"expression": "42 * 3"})), answer("126")])
    result = Agent(backend, tools=[calculator, lookup], constrain=True).run("Add 17 and 25, then multiply the result by 3.")
    assert result.answer == "126" and result.verified
    first, second = (r.constraint.json_schema for r in backend.requests[1:3])

    def calculates(schema: dict, expression: str) -> bool:
        return admits(schema, {"tool_calls": [{"name": "calculator", "arguments": {"expression": expression}}]})

    assert calculates(first, "17 + 25") and not calculates(first, "17 + 26") and not calculates(first, "42 * 3")
    assert calculates(second, "42 * 3")  # 42 came from the first call, on the task's own numbers
    # the calculation is under way (the task's 3 is unused): the turn goes on computing, from 42 and 3
    assert not admits(second, {"answer": 42}) and not calculates(second, "17 + 25 + 3")
    assert not calculates(second, "42 + 3")  # the task's "add" is done; its "multiply" is left
    looks_up = {"tool_calls": [{"name": "lookup", "arguments": {"number": 42}}]}
    assert admits(first, looks_up) and not admits(second, looks_up)  # only a tool that computes from numbers
    in_hand = backend.requests[3].constraint.json_schema  # 126 used every number of the task: the answer gives it
    assert admits(in_hand, {"answer": 126}) and admits(in_hand, {"answer": "The result is 126."})
    assert not admits(in_hand, {"answer": 42}) and not admits(in_hand, {"answer": "The result is 1260"})
    free = Agent(ScriptedBackend(replies=[plan("Add")]), tools=[calculator], constrain=True, check_grounding=False)
    free.run("Add 17 and 25.")
    assert calculates(free.backend.requests[1].constraint.json_schema, "17 + 26")  # no checks, no narrowing


def test_the_tools_a_task_names_are_offered_first(tmp_path):
    (tmp_path / "notes.txt").write_text("The demo is on Friday.")
    registry = ToolRegistry.with_builtins(tmp_path)
    backend = ScriptedBackend(replies=[plan("Read it"), calls(("read_file", {"path": "notes.txt"})), answer("Friday")])
    result = Agent(backend, tools=registry, constrain=True).run("Read notes.txt. On which day is the demo?")
    assert result.answer == "Friday" and result.verified
    first, second = (r.constraint.json_schema for r in backend.requests[1:3])
    listing = {"tool_calls": [{"name": "list_files", "arguments": {"path": "."}}]}
    assert not admits(first, listing) and not admits(first, {"answer": "Friday"})  # read_file, and nothing else
    assert admits(first, {"tool_calls": [{"name": "read_file", "arguments": {"path": "notes.txt"}}]})
    assert admits(second, listing) and admits(second, {"answer": "Friday"})  # once it was called, all as before


def test_verification_failure_with_no_replans_left():
    backend = ScriptedBackend(replies=[plan("Guess"), answer("7"), verdict(False, "wrong")])
    result = Agent(backend, tools=[add], max_replans=0, check_grounding=False, model_verify=True).run("2+3?")
    assert result.answer == "7" and not result.verified and "wrong" in result.reason
    grounded = Agent(ScriptedBackend(replies=[plan("Guess"), answer("7")]), tools=[add], max_replans=0).run("2+3?")
    assert not grounded.verified and "appears in no tool result" in grounded.reason


def test_programmatic_verifiers_run_before_the_model():
    backend = ScriptedBackend(replies=[plan("Answer"), answer("five"), plan("Use digits"), answer("5"), verdict(True)])
    digits = lambda text: None if text.strip().isdigit() else "the answer must be digits"  # noqa: E731
    result = Agent(backend, tools=[add], verifiers=[digits], check_grounding=False, model_verify=True).run("2+3?")
    verdicts = [e for e in result.events if e.type == "verdict"]
    assert (verdicts[0].passed, verdicts[0].by, verdicts[0].reasons) == (False, "checks", ["the answer must be digits"])
    assert verdicts[1].passed and verdicts[1].by == "model" and result.answer == "5"


def test_step_budget_exhausted():
    backend = ScriptedBackend(replies=[plan("Loop")] + [calls(("add", {"a": i, "b": 1})) for i in range(3)])
    result = Agent(backend, tools=[add], max_steps=3).run("never ends")
    assert kinds(result.events)[-1] == "final"
    assert result.answer is None and not result.verified and "step budget of 3" in result.reason


def test_repeated_calls_force_an_answer():
    same = calls(("add", {"a": 1, "b": 1}))
    backend = ScriptedBackend(replies=[plan("Add"), same, same, answer("2")])
    result = Agent(backend, tools=[add]).run("1+1")
    repeated = [e for e in result.events if e.type == "tool_result"][1]
    assert not repeated.ok and "already made this call" in repeated.error
    assert result.answer == "2"


def test_a_call_whose_argument_loops_does_not_run():
    ran = []

    @tool
    def evaluate(expression: str) -> str:
        """Evaluate an expression."""
        ran.append(expression)
        return "-238.76"

    looping = "tau-" * 40 + "tau"  # SmolLM2's call for "What is the budget in euros?"
    backend = ScriptedBackend(replies=[plan("Compute"), calls(("evaluate", {"expression": looping})),
                                       calls(("evaluate", {"expression": "42000 - 0"})), answer("42000")])
    result = Agent(backend, tools=[evaluate], check_grounding=False).run("What is the budget in euros?")
    first, second = [e for e in result.events if e.type == "tool_result"]
    assert not first.ok and "repeats 'tau-' 40 times" in first.error
    assert second.ok and ran == ["42000 - 0"] and result.answer == "42000"


class Person(BaseModel):
    name: str
    age: int


def test_output_type_validation_failure_is_fed_back():
    backend = ScriptedBackend(replies=[
        plan("Write JSON"), answer('{"name": "Ada"}'), plan("Add the age"), answer('{"name": "Ada", "age": 36}')])
    result = Agent(backend, output_type=Person).run("Describe Ada Lovelace")
    first = next(e for e in result.events if e.type == "verdict")
    assert not first.passed and "argument 'age' is required" in first.reasons[0]
    assert Person.model_validate_json(result.answer).age == 36


def test_context_is_shortened_then_summarized():
    @tool
    def dump(n: int) -> str:
        """Returns a lot of text."""
        return "lorem ipsum " * 300

    replies = [plan("Dump")] + [calls(("dump", {"n": i})) for i in range(4)] + [answer("done")]
    backend = ScriptedBackend(replies=replies, context_window=700)
    result = Agent(backend, tools=[dump, add], max_steps=8, check_grounding=False).run("dump things")
    trims = [e for e in result.events if e.type == "context"]
    assert trims and all(t.tokens_after < t.tokens_before for t in trims)
    assert {t.action for t in trims} == {"shortened_observations", "summarized_turns"}
    for request in backend.requests:  # no prompt ever went over the window
        assert len(backend.tokenizer.encode(backend.render(request.messages))) <= 700
    assert result.answer == "done"


def test_memory_recall_and_traces(tmp_path):
    from memory import Memory

    with Memory(tmp_path / "m.db", embedder=None) as memory:
        memory.add_text("The launch code word is pelican.", source="notes.md")
        backend = ScriptedBackend(replies=[plan("Recall"), answer("pelican")])
        result = Agent(backend, memory=memory).run("What is the launch code word?")
        recalled = next(e for e in result.events if e.type == "memory")
        assert recalled.hits and recalled.hits[0]["source"] == "notes.md"
        assert recalled.hits[0]["why"].startswith("every word; bm25 ")  # why it was recalled, for the trace
        assert "[%d]" % recalled.hits[0]["chunk_id"] in backend.requests[0].messages[-1].content
        stored = memory.traces.events(result.run_id)
        assert [e["type"] for e in stored] == [e.type for e in result.events]
        assert memory.traces.runs()[0]["status"] == "verified"


def test_ctrl_c_during_a_tool_stays_a_ctrl_c_when_the_log_cannot_record_it(tmp_path):
    from memory import Memory

    @tool
    def wait() -> str:
        """Wait."""
        raise KeyboardInterrupt  # what the user's Ctrl+C looks like inside the agent's thread

    with Memory(tmp_path / "m.db", embedder=None) as memory:
        backend = ScriptedBackend(replies=[plan("Wait"), calls(("wait", {}))])
        agent = Agent(backend, tools=[wait], memory=memory)
        memory.traces.finish = lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("database is locked"))
        with pytest.raises(KeyboardInterrupt):
            agent.run("Wait for it")


def test_a_memory_it_cannot_search_is_reported_and_the_run_goes_on(tmp_path):
    from memory import Memory
    from tests.test_memory.conftest import KeywordEmbedder, OtherEmbedder

    with Memory(tmp_path / "m.db", embedder=KeywordEmbedder()) as memory:
        memory.add_text("The cat is called Pelican.", source="notes.md")
    with Memory(tmp_path / "m.db", embedder=OtherEmbedder()) as memory:
        backend = ScriptedBackend(replies=[answer("Paris")])
        result = Agent(backend, memory=memory).run("What is the capital of France?")
        error = next(e for e in result.events if e.type == "error")
        assert error.recoverable and "memory recall failed" in error.message and "memory reembed" in error.message
        assert result.answer == "Paris" and not result.verified  # passed; nothing could check it


def test_continuing_a_conversation():
    backend = ScriptedBackend(replies=[plan("a"), answer("Paris"), plan("b"), answer("About 2 million")])
    agent = Agent(backend, check_grounding=False)  # "About 2 million" is from the model's knowledge, not a tool
    first = agent.run("Capital of France?")
    second = agent.run("And its population?", messages=first.messages)
    assert len(backend.requests) == 4  # plan and answer a run: no verdict turn by default
    act_request = backend.requests[3]
    assert any(m.content == "Capital of France?" for m in act_request.messages)
    assert [m.content for m in second.messages] == ["Capital of France?", "Paris", "And its population?", "About 2 million"]


def test_backend_failure_ends_with_error_and_final():
    backend = ScriptedBackend(replies=[plan("x")])  # runs out of replies in the act phase
    result = Agent(backend).run("task")
    assert kinds(result.events)[-2:] == ["error", "final"] and result.answer is None


def test_async_api():
    import asyncio

    backend = ScriptedBackend(replies=[plan("a"), answer("ok")] * 2)
    agent = Agent(backend)

    async def main():
        events = [e async for e in agent.astream("t")]
        result = await agent.arun("t")
        return events, result

    events, result = asyncio.run(main())
    assert events[-1].type == "final" and result.answer == "ok"


@pytest.mark.model
def test_real_model_uses_the_calculator(smollm2):
    from tools import ToolRegistry

    registry = ToolRegistry.with_builtins(".")
    result = Agent(smollm2, tools=[registry.get("calculator")]).run("What is 37 * 91? Use the calculator.")
    assert result.plan  # a valid, non-empty plan
    call = next(e for e in result.events if e.type == "tool_call")
    assert call.name == "calculator"
    assert any(e.type == "tool_result" and e.ok and e.output == "3367" for e in result.events)
    assert result.answer is not None and "3367" in result.answer


def test_a_task_the_model_can_answer_gets_no_plan_and_no_tools():
    backend = ScriptedBackend(replies=[answer("Hello! How can I help?")])
    result = Agent(backend, tools=[add]).run("Say hello.")
    assert kinds(result.events) == ["run_started", "phase:plan", "plan", "phase:verify", "verdict", "final"]
    decision = next(e for e in result.events if e.type == "plan")
    assert decision.direct and decision.steps == [] and result.answer == "Hello! How can I help?"
    assert len(backend.requests) == 1 and result.events[-2].by == "checks" and not result.verified  # one model call


def test_the_models_own_verdict_passes_but_never_verifies_what_no_check_confirmed():
    # SmolLM2 on its own tools: calls that failed, then the task's own number as the answer, and its verdict said passed
    failing = [calls(("divide", {"a": 1, "b": 0})), calls(("divide", {"a": 2, "b": 0}))]
    backend = ScriptedBackend(replies=[plan("Convert"), *failing, answer("250"), "250", verdict(True)])
    result = Agent(backend, tools=[divide], model_verify=True).run("How many feet are in 250 metres?")
    last = [e for e in result.events if e.type == "verdict"][-1]
    assert last.by == "model" and last.passed and result.answer == "250" and not result.verified


def test_when_no_tool_worked_the_answer_is_asked_in_plain_words_without_tools():
    # SmolLM2 with eleven tools: get_forecast("London") twice for a question no tool serves, then "2" in the act schema
    failing = [calls(("divide", {"a": 1, "b": 0})), calls(("divide", {"a": 2, "b": 0}))]
    backend = ScriptedBackend(replies=[plan("Look it up"), *failing, answer("2"), "There are 120 minutes in two hours.",
                                       verdict(True)])
    result = Agent(backend, tools=[divide], constrain=True, model_verify=True).run("How many minutes are there in two hours?")
    steer = next(e for e in result.events if e.type == "steer")
    assert steer.policy == "answer_when_no_tool_works" and steer.tool_choice == "none"
    asked = backend.requests[-2]  # the question alone, as its user asked it: no tools, no agent's system prompt
    question = [("user", "How many minutes are there in two hours?")]
    assert not asked.tools and [(m.role, m.content) for m in asked.messages] == question
    assert not admits_text(asked.constraint.regex, '{"answer": "2"}')
    assert result.answer == "There are 120 minutes in two hours." and not result.verified
    # in a continued conversation the question is asked after what came before it
    earlier = [Message(role="user", content="Two hours of what?"), Message(role="assistant", content="Of time.")]
    backend = ScriptedBackend(replies=[plan("Look it up"), *failing, answer("2"), "120 minutes."])
    Agent(backend, tools=[divide]).run("How many minutes are there in two hours?", messages=earlier)
    assert [m.content for m in backend.requests[-1].messages] == [*(m.content for m in earlier), question[0][1]]


def test_a_direct_answer_to_a_task_that_asks_for_a_tool_is_refused():
    @tool
    def define(word: str) -> str:
        """A word's meaning."""
        return "a rock pool left by the tide"

    backend = ScriptedBackend(replies=[answer("A kind of pond"), plan("Define the word"), calls(("define", {"word": "tidepool"})),
                                       answer("A rock pool left by the tide")])
    result = Agent(backend, tools=[define]).run("Define tidepool, please.")  # names the tool: answered at once, refused
    first = [e for e in result.events if e.type == "verdict"][0]
    assert not first.passed and first.reasons == ["The task asks to use define; call it before answering"]
    assert result.answer == "A rock pool left by the tide" and result.verified


def test_a_direct_answer_that_fails_its_checks_falls_back_to_a_plan():
    backend = ScriptedBackend(replies=[answer("3797"), plan("Use the add tool"), calls(("add", {"a": 37, "b": 91})),
                                       answer("128")])
    result = Agent(backend, tools=[add]).run("What is 37 + 91?")
    plans = [e for e in result.events if e.type == "plan"]
    assert plans[0].direct and plans[1].steps == ["Use the add tool"]
    assert "The number 3797 appears in no tool result" in backend.requests[1].messages[-1].content
    assert result.answer == "128" and result.verified


def test_run_many_keeps_the_order_and_runs_as_many_at_once_as_the_backend_batches(monkeypatch):
    import threading
    import time

    from agent.loop import RunResult

    backend = ScriptedBackend()
    backend.parallel = 3  # as LocalBackend(parallel=3) says
    agent = Agent(backend)
    running, most = [0], [0]
    lock = threading.Lock()

    def run(task, messages=()):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return RunResult(answer=task.upper(), verified=True, plan=[], events=[], messages=[])

    monkeypatch.setattr(agent, "run", run)
    tasks = [f"task {i}" for i in range(7)]
    assert [r.answer for r in agent.run_many(tasks)] == [t.upper() for t in tasks]
    assert most[0] == 3
    most[0] = 0
    agent.run_many(tasks, concurrency=1)
    assert most[0] == 1
