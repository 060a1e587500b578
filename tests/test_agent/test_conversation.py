"""The agent on a model with its own tool format and no plan: the tool conversation the model was
trained on, checked by the default checks (agent/checks.py)."""

import time

from agent import Agent
from agent.checks import Check, Finding, SumsHold
from agent.events import Final, ToolReturned, Verdict
from backends import Message, ToolCall
from backends.scripted import ScriptedBackend


def product_price(product: str) -> float:
    """The shop's price of a product, in euros."""
    return {"kettle": 27.0, "toaster": 41.25}[product]


def converse(replies, tools=(product_price,), **options) -> tuple[Agent, ScriptedBackend]:
    backend = ScriptedBackend(replies=replies)
    return Agent(backend, tools=list(tools), native_tools=True, **options), backend


def test_a_question_that_needs_no_tool_takes_one_model_call_and_is_left_unverified():
    agent, backend = converse(["The chemical symbol for gold is Au."])
    result = agent.run("What is the chemical symbol for gold?")
    assert result.answer == "The chemical symbol for gold is Au." and not result.verified
    assert len(backend.requests) == 1
    (request,) = backend.requests
    assert [m.role for m in request.messages] == ["system", "user"] and request.messages[1].content == result.messages[-2].content
    assert request.tool_choice == "auto" and request.constraint is None  # the model answers as it would


def test_calls_go_back_in_the_tool_role_and_an_answer_stating_a_result_is_verified():
    agent, backend = converse([[ToolCall.create("c1", "product_price", {"product": "kettle"})], "A kettle costs €27."])
    result = agent.run("How much does a kettle cost?")
    assert result.answer == "A kettle costs €27." and result.verified
    last = backend.requests[-1].messages
    assert [m.role for m in last[-3:]] == ["user", "assistant", "tool"] and last[-1].content == "27.0"
    (verdict,) = [e for e in result.events if isinstance(e, Verdict)]
    assert verdict.passed and verdict.rules == []


def test_a_reply_that_talks_about_a_tool_is_refused_by_name_and_followed_by_a_forced_call():
    preamble = "To find the price, we can use the `product_price` function with the product name."
    agent, backend = converse([preamble, [ToolCall.create("c1", "product_price", {"product": "kettle"})], "27 euros."])
    result = agent.run("How much does a kettle cost?")
    refused = [e for e in result.events if isinstance(e, Verdict) and not e.passed]
    assert refused[0].rules == ["names_an_uncalled_tool"] and refused[0].answer == preamble
    assert backend.requests[1].tool_choice == "required" and "product_price" in backend.requests[1].messages[-1].content
    assert backend.requests[2].tool_choice == "auto"
    assert result.answer == "27 euros." and result.verified


def test_a_call_written_as_text_is_not_the_answer():
    cut = '<tool_call>\n{"name": "product_price", "arguments": {"product": "kett'  # max_tokens ran out
    agent, _ = converse([cut, [ToolCall.create("c1", "product_price", {"product": "kettle"})], "27"])
    result = agent.run("How much does a kettle cost?")
    refused, passed = (e for e in result.events if isinstance(e, Verdict))
    assert "not_a_call" in refused.rules and refused.call_next and passed.passed
    assert result.answer == "27"


def test_answers_in_any_script_with_currency_signs_pass():
    for answer in ["€119,500", "東京です。", "La capitale de la France est Paris.", "−40 °C"]:
        agent, _ = converse([answer])
        assert agent.run("?").answer == answer


def test_a_model_that_never_stops_calling_ends_at_the_step_budget_with_no_answer():
    calls = [[ToolCall.create(f"c{i}", "product_price", {"product": "kettle"})] for i in range(4)]
    agent, _ = converse(calls, max_steps=4)
    result = agent.run("How much does a kettle cost?")
    assert result.answer is None and "step budget of 4" in result.events[-1].reason
    outputs = [e for e in result.events if isinstance(e, ToolReturned)]
    assert outputs[0].ok and not any(o.ok for o in outputs[1:])  # the repeats did not run again


def test_tools_that_return_non_text_raise_or_hang_are_observations():
    def record() -> dict:
        """A record."""
        return {"name": "Ana", "tags": ["a"], "raw": b"\x00"}

    def nothing() -> None:
        """Nothing."""

    def broken() -> str:
        """Fails."""
        raise RuntimeError("the service is down")

    def slow() -> str:
        """Hangs."""
        time.sleep(5)
        return "late"

    from tools import Tool

    tools = [record, nothing, broken, Tool(slow, timeout=0.2)]
    calls = [[ToolCall.create(f"c{i}", name, {})] for i, name in enumerate(["record", "nothing", "broken", "slow"])]
    agent, _ = converse([*calls, "done"], tools=tools, max_steps=6)
    result = agent.run("Use every tool.")
    returned = {e.name: e for e in result.events if isinstance(e, ToolReturned)}
    assert returned["record"].ok and '"Ana"' in returned["record"].output
    assert returned["nothing"].ok and returned["nothing"].output == ""
    assert not returned["broken"].ok and "the service is down" in returned["broken"].error
    assert not returned["slow"].ok and "did not finish" in returned["slow"].error
    assert isinstance(result.events[-1], Final) and result.answer == "done"


class MustSayEuro(Check):
    """A user's own rule: prices are stated in euros."""

    name = "must_say_euro"

    def __call__(self, answer, evidence):
        return None if "€" in answer or "euro" in answer.lower() else Finding.refuse(self, "State the price in euros")


def test_checks_are_pluggable_and_each_refusal_names_its_rule():
    agent, backend = converse([[ToolCall.create("c1", "product_price", {"product": "kettle"})], "27", "€27"],
                              checks=[MustSayEuro()])
    result = agent.run("How much does a kettle cost?")
    verdicts = [e for e in result.events if isinstance(e, Verdict)]
    assert [v.rules for v in verdicts] == [["must_say_euro"], []]
    assert "State the price in euros" in backend.requests[-1].messages[-1].content
    assert result.answer == "€27" and not result.verified  # nothing confirmed it: the one check only refuses


def test_a_turn_that_only_repeats_a_call_is_followed_by_the_task_restated_then_an_answer_turn():
    """Qwen2.5-Coder-0.5B and 1.5B call product_price again after its result. The task is asked afresh
    with what was found, tools offered; a repeat after that is followed by an answer turn without the
    tools (shown them, the 0.5B model writes the call a third time as text)."""
    call = [ToolCall.create("c1", "product_price", {"product": "kettle"})]
    agent, backend = converse([call, call, call, "A kettle costs 27 euros."])
    result = agent.run("How much does a kettle cost?")
    restated, answer_turn = backend.requests[-2:]
    assert restated.tool_choice == "auto" and [m.role for m in restated.messages] == ["system", "user"]
    assert restated.messages[-1].content.startswith("How much does a kettle cost?\n\nFound so far with the tools:")
    assert answer_turn.tools is None and answer_turn.tool_choice is None
    assert [m.role for m in answer_turn.messages] == ["system", "user"]  # the turns it restates are not sent again
    assert "product_price({\"product\": \"kettle\"}) -> 27.0" in answer_turn.messages[-1].content
    steers = [e.policy for e in result.events if e.type == "steer"]
    assert steers == ["restate_when_stuck", "answer_when_nothing_new"]
    assert result.answer == "A kettle costs 27 euros." and result.verified


def test_after_the_task_is_restated_each_new_result_restates_it_again():
    """Once a model has shown that it does not move on in the conversation of calls and results, the next
    call's result is not left to it there either: a kettle's price, restated, a toaster's, restated, answer."""
    price = [ToolCall.create("c1", "product_price", {"product": "kettle"})]
    toaster = [ToolCall.create("c2", "product_price", {"product": "toaster"})]
    agent, backend = converse([price, price, toaster, "27 + 41.25 = 68.25 euros."])
    result = agent.run("What do a kettle and a toaster cost together?")
    assert [e.policy for e in result.events if e.type == "steer"] == ["restate_when_stuck", "restate_when_stuck"]
    last = backend.requests[-1].messages
    assert [m.role for m in last] == ["system", "user"] and "-> 41.25" in last[-1].content and "-> 27.0" in last[-1].content
    assert result.answer == "27 + 41.25 = 68.25 euros."


def test_a_wrong_sum_in_the_answer_is_put_right_and_the_model_answer_kept_in_the_verdict():
    """Qwen2.5-Coder-1.5B, given a toaster's 41.25 euros and the rate 1.08, wrote 41.25 * 1.08 = 46.05, and again
    after a refusal that named 44.55."""
    agent, backend = converse([[ToolCall.create("c1", "product_price", {"product": "toaster"})],
                               "41.25 * 1.08 = 46.05, so it costs 46.05 US dollars."])
    result = agent.run("What does a toaster cost in US dollars, at 1.08 dollars a euro?")
    assert result.answer == "41.25 * 1.08 = 44.55, so it costs 44.55 US dollars."
    (verdict,) = [e for e in result.events if e.type == "verdict"]
    assert verdict.passed and verdict.mended_by == ["sums_hold"] and verdict.rules == []
    assert verdict.model_answer == "41.25 * 1.08 = 46.05, so it costs 46.05 US dollars."
    assert len(backend.requests) == 2  # no turn spent on the retry
    assert result.messages[-1].content == result.answer


def test_without_mending_a_wrong_sum_goes_back_with_the_right_value():
    replies = [[ToolCall.create("c1", "product_price", {"product": "toaster"})],
               "41.25 * 1.08 = 46.05 US dollars.", "41.25 * 1.08 = 44.55 US dollars."]
    agent, backend = converse(replies, checks=[SumsHold(mend=False)])
    result = agent.run("What does a toaster cost in US dollars, at 1.08 dollars a euro?")
    assert "41.25 * 1.08 is 44.55, not 46.05" in backend.requests[-1].messages[-1].content
    assert [e.rules for e in result.events if e.type == "verdict"] == [["sums_hold"], []]
    assert result.answer == "41.25 * 1.08 = 44.55 US dollars."


def test_an_answer_only_partly_mended_goes_back_as_the_model_wrote_it():
    """A fault no check can put right stays after the sum is mended: the model sees its own answer refused."""
    replies = ["2 * 3 = 7, plus 1 is 8, or 18 in some other count.", "2 * 3 = 6, and 6 + 1 = 7."]
    agent, backend = converse(replies, checks=[SumsHold(), Unmendable()])
    result = agent.run("What is 2 * 3 + 1?")
    first = [e for e in result.events if e.type == "verdict"][0]
    assert not first.passed and first.answer == replies[0] and first.mended_by == [] and first.model_answer is None
    assert result.answer == "2 * 3 = 6, and 6 + 1 = 7."


def test_a_chain_of_wrong_sums_is_mended_one_fault_at_a_time():
    agent, _ = converse(["2 * 3 = 7 and 7 + 1 = 9, so the answer is 9."], tools=())
    result = agent.run("What is 2 * 3 + 1?")
    assert result.answer == "2 * 3 = 6 and 6 + 1 = 7, so the answer is 7."
    (verdict,) = [e for e in result.events if e.type == "verdict"]
    assert verdict.mended_by == ["sums_hold"] and verdict.model_answer == "2 * 3 = 7 and 7 + 1 = 9, so the answer is 9."


class Unmendable(Check):
    """Refuses an answer that states 18, and cannot mend it."""

    name = "no_eighteen"

    def __call__(self, answer, evidence):
        return Finding.refuse(self, "18 is not it") if "18" in answer else None


def test_the_calls_of_a_reply_that_said_something_first_go_back_alone():
    """Qwen2.5-Coder-1.5B says what it will do, then calls. Kept with those words ("Here's how you can
    do it: ..."), the result read to it as the user's, and it answered "Thank you for providing the response."."""
    said = "To find the price of a kettle, you can use the `product_price` function. Here's how you can do it:"
    reply = Message(role="assistant", content=said, tool_calls=[ToolCall.create("c1", "product_price", {"product": "kettle"})])
    agent, backend = converse([reply, "A kettle costs 27 euros."])
    result = agent.run("How much does a kettle cost?")
    turn = backend.requests[-1].messages[-2]
    assert turn.role == "assistant" and turn.content is None and turn.tool_calls[0].name == "product_price"
    assert result.answer == "A kettle costs 27 euros." and not [e for e in result.events if e.type == "verdict" and not e.passed]


def test_a_new_call_written_among_words_is_run_and_a_made_or_invalid_one_is_not():
    """Qwen2.5-Coder-1.5B writes its next call as JSON with words after it, where the engine reads no call."""
    kettle = '{"name": "product_price", "arguments": {"product": "kettle"}}'
    agent, backend = converse([f"First the kettle:\n```json\n{kettle}\n```\nThis returns its price.",
                               f"Again:\n```json\n{kettle}\n```\nand then we know.",
                               'Or with a wrong argument: {"name": "product_price", "arguments": {"item": 3}} ok?',
                               "A kettle costs 27 euros."], policies=[])
    result = agent.run("How much does a kettle cost?")
    assert [(e.name, e.arguments) for e in result.events if e.type == "tool_call"] == [("product_price", {"product": "kettle"})]
    assert backend.requests[1].messages[-2].tool_calls[0].name == "product_price"  # it went back as the call it is
    assert [e.rules for e in result.events if e.type == "verdict"] == [["not_a_call"], ["not_a_call"], []]
    assert result.answer == "A kettle costs 27 euros."


def test_a_new_call_written_as_code_is_run_and_its_made_up_result_is_not_the_answer():
    """Qwen2.5-Coder-1.5B narrates calls as code with results it makes up: `product_price({"product": "notebook"}) -> 3.8`."""
    agent, backend = converse(['1. product_price({"product": "toaster"}) -> 38.0\n2. So 38.0 euros.',
                               "A toaster costs 41.25 euros."], policies=[])
    result = agent.run("How much does a toaster cost?")
    assert [(e.name, e.arguments) for e in result.events if e.type == "tool_call"] == [("product_price", {"product": "toaster"})]
    assert backend.requests[1].messages[-1].content == "41.25"
    assert result.answer == "A toaster costs 41.25 euros." and result.verified


def test_an_answer_turn_runs_no_call_written_in_it():
    agent, backend = converse(['{"name": "product_price", "arguments": {"product": "kettle"}} costs 27.'],
                              tools=(), policies=[])
    result = agent.run("How much does a kettle cost?")
    assert not [e for e in result.events if e.type == "tool_call"] and backend.requests[0].tool_choice is None
