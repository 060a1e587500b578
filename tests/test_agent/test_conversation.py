"""The agent on a model with its own tool format and no plan: the tool conversation the model was
trained on, checked by the default checks (agent/checks.py)."""

import time

from agent import Agent
from agent.checks import Check, Finding
from agent.events import Final, ToolReturned, Verdict
from backends import Message, ToolCall
from backends.scripted import ScriptedBackend


def product_price(product: str) -> float:
    """The shop's price of a product, in euros."""
    return {"kettle": 27.0}[product]


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
    raw = '<tool_call>\n{"name": "product_price", "arguments": {"product": "kettle"}}\n</tool_call>'
    agent, _ = converse([raw, [ToolCall.create("c1", "product_price", {"product": "kettle"})], "27"])
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


def test_a_turn_that_only_repeats_a_call_is_followed_by_an_answer_turn_without_the_tools():
    """Qwen2.5-Coder-0.5B calls product_price again after its result; shown the tools, it writes the
    call a third time as text. The answer turn leaves them out and lists what was found."""
    call = [ToolCall.create("c1", "product_price", {"product": "kettle"})]
    agent, backend = converse([call, call, "A kettle costs 27 euros."])
    result = agent.run("How much does a kettle cost?")
    answer_turn = backend.requests[-1]
    assert answer_turn.tools is None and answer_turn.tool_choice is None
    assert "product_price({\"product\": \"kettle\"}) -> 27.0" in answer_turn.messages[-1].content
    assert result.answer == "A kettle costs 27 euros." and result.verified


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
