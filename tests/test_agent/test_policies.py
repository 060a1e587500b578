"""Policies of the tool conversation (agent/policies.py): named parts that decide what the next turn
may do, each decision shown as a Steered event."""

import json

from agent import Agent
from agent.checks import NotACall, NotAMessage
from agent.events import Steered, ToolReturned, Verdict
from agent.offers import Observation
from agent.policies import DEFAULT, AnswerWhenNothingNew, Next, Policy, RestateWhenStuck, RunSoFar, Turn, stuck
from agent.turns import TEXT_ANSWER
from backends import ToolCall
from backends.scripted import ScriptedBackend


def product_price(product: str) -> float:
    """The shop's price of a product, in euros."""
    if product != "desk lamp":
        raise KeyError(f"the shop does not sell {product!r}; it sells: desk lamp")
    return 34.5


def converse(replies, **options) -> tuple[Agent, ScriptedBackend]:
    backend = ScriptedBackend(replies=replies)
    return Agent(backend, tools=[product_price], native_tools=True, **options), backend


def call(**arguments):
    return [ToolCall.create("c", "product_price", arguments)]


def test_a_refused_reply_written_again_is_followed_by_a_forced_call():
    """Qwen2.5-Coder-1.5B wrote a tool's error as its answer four times in a row under greedy decoding."""
    error_again = "The shop does not sell 'desk lamps, quantity: 3'; it sells desk lamp"
    agent, backend = converse([call(product="desk lamps, quantity: 3"), error_again, error_again,
                               call(product="desk lamp"), "3 desk lamps cost 103.5 euros."])
    result = agent.run("How much do 3 desk lamps cost?")
    assert [r.tool_choice for r in backend.requests] == ["auto", "auto", "auto", "required", "auto"]
    (steer,) = [e for e in result.events if isinstance(e, Steered)]
    assert steer.policy == "not_the_same_refusal" and steer.tool_choice == "required"
    assert result.answer == "3 desk lamps cost 103.5 euros."


def test_without_policies_the_model_keeps_its_own_choice():
    preamble = "To find it, use the `product_price` function."
    agent, backend = converse([preamble, call(product="desk lamp"), "34.5 euros"], policies=[])
    result = agent.run("What does a desk lamp cost?")
    assert [r.tool_choice for r in backend.requests] == ["auto", "auto", "auto"]
    assert not [e for e in result.events if isinstance(e, Steered)] and result.answer == "34.5 euros"


class AnswerAfterOneResult(Policy):
    """A user's own policy: one lookup is enough; answer from it."""

    name = "answer_after_one_result"

    def __call__(self, run):
        if run.turns[-1].calls and any(o.ok for o in run.evidence):
            return Next(self.name, "none", "Answer now from the price found.", "one result is enough")
        return None


def test_a_user_policy_steers_the_next_turn_and_is_named_in_the_run():
    agent, backend = converse([call(product="desk lamp"), "34.5 euros"], policies=[AnswerAfterOneResult(), *DEFAULT])
    result = agent.run("What does a desk lamp cost?")
    answer_turn = backend.requests[-1]
    assert answer_turn.tools is None and answer_turn.messages[-1].content == "Answer now from the price found."
    (steer,) = [e for e in result.events if isinstance(e, Steered)]
    assert (steer.policy, steer.tool_choice, steer.why) == ("answer_after_one_result", "none", "one result is enough")


def test_without_tools_no_policy_forces_a_call():
    backend = ScriptedBackend(replies=["x", "x", "y"])
    agent = Agent(backend, native_tools=True, checks=[RefuseX()])
    result = agent.run("?")
    assert all(r.tool_choice is None for r in backend.requests) and result.answer == "y"


class RefuseX(NotAMessage):
    name = "refuse_x"

    def __call__(self, answer, evidence):
        from agent.checks import Finding

        return Finding.refuse(self, "not x", call_next=True) if answer == "x" else None


def test_a_call_cut_off_by_max_tokens_is_not_an_answer():
    """Qwen2.5-Coder-0.5B, its string argument never closed: the reply ran to max_tokens as text."""
    cut = '{"name": "product_price", "arguments": {"product": "desk lamp}}.0000000000'
    fenced = '```json\n{\n  "name": "product_price",\n  "arguments": {\n    "product": "T'
    agent, _ = converse([])
    from agent.checks import Evidence

    evidence = Evidence("What does a desk lamp cost?", tools=agent.tools.schemas())
    for reply in (cut, fenced):
        assert NotACall()(reply, evidence) is not None
    assert NotACall()('{"name": "Ana", "age": 3}', evidence) is None  # a JSON answer that names no tool


def test_a_model_that_goes_on_calling_answers_on_the_last_turn_of_the_budget():
    """Qwen2.5-Coder-0.5B converted 30 °C to 86 °F, then went on calling until the budget ran out."""
    calls = [call(product="desk lamp"), call(product="kettle"), call(product="toaster")]
    agent, backend = converse([*calls, "A desk lamp costs 34.5 euros."], max_steps=4, constrain=True)
    result = agent.run("What does a desk lamp cost?")
    steers = [e for e in result.events if isinstance(e, Steered)]
    assert [s.policy for s in steers] == ["answer_on_the_last_turn"] and backend.requests[-1].tool_choice is None
    assert 'product_price({"product": "desk lamp"}) -> 34.5' in backend.requests[-1].messages[-1].content
    assert backend.requests[-1].constraint.regex == TEXT_ANSWER  # it cannot write a call as text instead
    assert result.answer == "A desk lamp costs 34.5 euros."
    # It states the first result, but the model had not stopped calling: nothing confirms it is the answer.
    assert not result.verified and not [e for e in result.events if e.type == "verdict"][-1].verified


def test_repeats_are_not_run_again_and_the_answer_turn_names_its_policy():
    agent, backend = converse([call(product="desk lamp"), call(product="desk lamp"), "34.5 euros"],
                              policies=[AnswerWhenNothingNew()])
    result = agent.run("What does a desk lamp cost?")
    assert [e.ok for e in result.events if isinstance(e, ToolReturned)] == [True, False]
    (steer,) = [e for e in result.events if isinstance(e, Steered)]
    assert steer.policy == "answer_when_nothing_new" and backend.requests[-1].tool_choice is None


def observation(product: str, repeated: bool = False) -> Observation:
    return Observation("product_price", json.dumps({"product": product}), "34.5", True, repeated)


def refused(reply: str, *rules: str) -> Turn:
    return Turn(reply=reply, verdict=Verdict(passed=False, reasons=["no"], by="checks", answer=reply, rules=list(rules)))


def test_a_turn_is_stuck_when_it_asks_for_nothing_new_in_calls_or_in_text():
    made = [observation("desk lamp")]
    fenced = 'Let us call it:\n```json\n{"name": "product_price", "arguments": {"product": "desk lamp"}}\n```\nThen...'
    assert stuck(Turn(calls=[observation("desk lamp", repeated=True)]), made)
    assert not stuck(Turn(calls=[observation("desk lamp", repeated=True), observation("kettle")]), made)
    assert stuck(refused(fenced, "not_a_call"), made)  # the made call, written out again as text
    assert not stuck(refused(fenced.replace("desk lamp", "kettle"), "not_a_call"), made)  # a new call
    assert not stuck(refused(fenced, "not_a_call", "names_an_uncalled_tool"), made)  # it names the next tool
    assert not stuck(refused("I do not know.", "not_a_message"), made)  # no call in it


def test_the_task_is_restated_once_for_a_repeat_then_after_each_new_result():
    made, again = observation("desk lamp"), observation("desk lamp", repeated=True)
    restate = RestateWhenStuck()
    first = restate(RunSoFar("task", [Turn(calls=[made]), Turn(calls=[again])], [made, again], 4))
    assert first.restart and first.tool_choice == "auto" and "- product_price" in first.message
    stuck_again = [Turn(calls=[made]), Turn(calls=[again]), Turn(calls=[again], steered_by=restate.name)]
    assert restate(RunSoFar("task", stuck_again, [made, again, again], 3)) is None  # AnswerWhenNothingNew's turn
    kettle = observation("kettle")
    moved_on = [Turn(calls=[made]), Turn(calls=[again]), Turn(calls=[kettle], steered_by=restate.name)]
    assert restate(RunSoFar("task", moved_on, [made, again, kettle], 3)).why == "a new result since the task was restated"
    assert restate(RunSoFar("task", [Turn(calls=[made])], [made], 5)) is None  # a model that moves on is left alone


def test_the_last_turn_of_the_budget_after_a_refused_answer_is_its_retry_without_tools():
    """Asked afresh, a greedy model writes the refused answer again; the retry keeps the reasons in view."""
    agent, backend = converse([call(product="desk lamp"), "x", "34.5 euros"], max_steps=3, checks=[RefuseX()])
    result = agent.run("What does a desk lamp cost?")
    last = backend.requests[-1]
    assert last.tools is None and last.messages[-2].content == "x" and "not x" in last.messages[-1].content
    assert [e.policy for e in result.events if isinstance(e, Steered)] == ["answer_on_the_last_turn"]
    assert result.answer == "34.5 euros"


def test_when_every_call_fails_the_next_turn_answers_without_tools_once():
    """Qwen2.5-Coder-1.5B, asked "¿Cuál es la capital de Francia?", called tool after tool that could not serve it."""
    agent, backend = converse([call(product="Paris"), call(product="France"), "París."])
    result = agent.run("¿Cuál es la capital de Francia?")
    assert [r.tool_choice for r in backend.requests] == ["auto", "auto", None]
    (steer,) = [e for e in result.events if isinstance(e, Steered)]
    assert steer.policy == "answer_when_no_tool_works" and steer.tool_choice == "none"
    asked = backend.requests[-1].messages
    assert [m.role for m in asked] == ["system", "user"] and "Every tool call failed" in asked[-1].content
    assert "¿Cuál es la capital de Francia?" in asked[-1].content and result.answer == "París."


def test_one_failure_or_a_call_that_worked_leaves_the_model_calling():
    """A first call with a wrong argument is the usual way to a right one ("desk lamps" -> "desk lamp")."""
    for calls in ([call(product="desk lamps"), call(product="desk lamp")],
                  [call(product="desk lamp"), call(product="lamp"), call(product="kettle")]):
        agent, backend = converse([*calls, "A desk lamp costs 34.5 euros."])
        result = agent.run("How much is a desk lamp?")
        assert "answer_when_no_tool_works" not in [e.policy for e in result.events if isinstance(e, Steered)]
        assert result.answer == "A desk lamp costs 34.5 euros."


def test_an_answer_from_the_only_failed_call_goes_back_to_be_answered_without_tools():
    """Qwen2.5-Coder-1.5B, asked "What is the chemical symbol for gold?", called a tool that could not serve it
    and answered from its error; asked again without tools, with the error in front of it, it may answer."""
    agent, backend = converse([call(product="gold"), "Gold is not sold in the shop.", "Au."])
    result = agent.run("What is the chemical symbol for gold?")
    assert [r.tool_choice for r in backend.requests] == ["auto", "auto", None]
    refusal = next(e for e in result.events if isinstance(e, Verdict) and not e.passed)
    assert refusal.rules == ["not_only_errors"] and refusal.answer == "Gold is not sold in the shop."
    assert [e.policy for e in result.events if isinstance(e, Steered)] == ["answer_when_no_tool_works"]
    assert "Every tool call failed" in backend.requests[-1].messages[-1].content and result.answer == "Au."


def test_an_answer_after_only_failed_calls_written_again_passes_the_second_time():
    agent, _ = converse([call(product="gold"), "Gold has no price in this shop.", "Gold has no price in this shop."])
    result = agent.run("How much does gold cost?")
    assert result.answer == "Gold has no price in this shop." and not result.verified
