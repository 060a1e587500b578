"""The agent's act turn in the model's own tool-call format, on tiny models of the families that
have one: the call is forced valid by grammar, and its result goes back through the template's
tool role (Qwen2.5 <tool_response>, Llama 3.1 ipython, Mistral [TOOL_RESULTS])."""

import json
from typing import Literal

import pytest
from pydantic import BaseModel

from agent import Agent
from agent.checks import DEFAULT
from agent.events import Final, ToolCalled, ToolReturned, Verdict
from agent.turns import MAX_STRING
from backends import SamplingParams, ToolCall
from backends.scripted import ScriptedBackend
from tests.fixtures.chat_families import FAMILIES
from tools import tool

calls_made: list[str] = []


@tool
def get_weather(city: Literal["Paris", "Oslo"]) -> str:
    """Current weather for a city."""
    calls_made.append(city)
    return f"sunny in {city}"


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_native_call_runs_and_its_result_goes_back_in_the_tool_role(chat_models, name, monkeypatch):
    backend = chat_models[name]
    opening = backend.tool_format.opening
    opening_token = backend.tokenizer.encode(opening)[0]
    prompts: list[str] = []
    render = backend.render
    monkeypatch.setattr(backend, "render", lambda messages, tools=None: prompts.append(render(messages, tools)) or prompts[-1])
    # A random-weight model calls a tool only when pushed to: the bias makes the opening of a call likely.
    sampling = SamplingParams(temperature=0, max_tokens=60, logit_bias={opening_token: 50.0})
    agent = Agent(backend, tools=[get_weather], model_verify=False, max_steps=3, sampling=sampling)
    assert agent.native
    events = list(agent.stream("What is the weather in Paris?"))
    called = [e for e in events if isinstance(e, ToolCalled)]
    assert called and called[0].name == "get_weather" and called[0].arguments["city"] in ("Paris", "Oslo")
    assert any(isinstance(e, ToolReturned) and e.ok for e in events)
    assert isinstance(events[-1], Final)
    role = {"qwen2.5": "<tool_response>\nsunny in", "llama3.1": "ipython<|end_header_id|>\n\n\"sunny in",
            "mistral": '[TOOL_RESULTS] {"content": sunny in'}[name]
    assert any(role in prompt for prompt in prompts)


def test_backends_without_a_tool_format_keep_the_json_act_schema(smollm2):
    assert not Agent(smollm2, tools=[get_weather]).native
    assert not Agent(ScriptedBackend(replies=[]), tools=[get_weather]).native
    assert Agent(ScriptedBackend(replies=[]), tools=[get_weather], native_tools=True).native


def test_after_a_replan_a_native_turn_must_make_a_call_not_made_yet():
    """As the JSON act schema does: the grammar (callable_tools) excludes the call that led to the failed answer."""
    backend = ScriptedBackend(replies=[
        json.dumps({"steps": ["Ask for the weather"]}), [ToolCall.create("c1", "get_weather", {"city": "Oslo"})],
        "It is sunny in Oslo", json.dumps({"steps": ["Ask for the weather in Paris"]}),
        [ToolCall.create("c2", "get_weather", {"city": "Paris"})], "It is sunny in Paris"])
    in_paris = lambda answer: "Paris" in answer or "the task asks about Paris"  # noqa: E731
    result = Agent(backend, tools=[get_weather], native_tools=True, plan=True, model_verify=False, verifiers=[in_paris]).run(
        "What is the weather in Paris?")
    assert result.answer == "It is sunny in Paris" and result.verified
    first, after_replan = (r for r in backend.requests if r.tool_choice in ("auto", "required") and r.callable_tools
                           and not r.messages[-1].role == "tool")
    assert first.tool_choice == "required"  # the task names Paris, a value of get_weather's city: it is called first
    assert first.callable_tools == first.tools
    assert after_replan.tool_choice == "required"
    (offered,) = after_replan.callable_tools
    assert "Oslo" not in json.dumps(offered) and "Paris" in json.dumps(offered)
    assert [t["function"]["name"] for t in after_replan.tools] == ["get_weather"]  # the template shows it whole


def test_an_answer_cut_at_the_act_bound_is_refused_and_the_run_goes_on():
    """Qwen2.5-Coder-0.5B's plan path wrote a preamble until the 160-character bound cut it, and it was verified."""
    preamble = ("The weather in Paris is what the tool says, sunny in Paris, and to be sure of it I will now go "
                "through the reply of the tool once more and then write it down as my answer, so")
    preamble = (preamble + " and so on" * 20)[:MAX_STRING]
    backend = ScriptedBackend(replies=[
        json.dumps({"steps": ["Ask for the weather"]}), [ToolCall.create("c1", "get_weather", {"city": "Paris"})],
        preamble, json.dumps({"steps": ["Answer in one sentence"]}), "It is sunny in Paris."])
    events = list(Agent(backend, tools=[get_weather], native_tools=True, plan=True, model_verify=False).stream(
        "What is the weather in Paris?"))
    verdicts = [e for e in events if isinstance(e, Verdict)]
    assert verdicts[0].rules == ["cut_off"] and not verdicts[0].passed and "cut off at 160" in verdicts[0].reasons[0]
    final = events[-1]
    assert isinstance(final, Final) and final.answer == "It is sunny in Paris."


def test_a_cut_preamble_that_names_a_tool_keeps_that_checks_refusal():
    preamble = ("To find the weather in Paris, I will use the `get_weather` function from the tools, which takes a "
                "city and returns its weather, and then I will tell you what it says about it in")
    preamble = (preamble + " and so on" * 20)[:MAX_STRING]
    backend = ScriptedBackend(replies=[json.dumps({"steps": ["Ask for the weather"]}), preamble,
                                       json.dumps({"steps": ["Ask for the weather in Paris"]}),
                                       [ToolCall.create("c1", "get_weather", {"city": "Paris"})], "It is sunny in Paris."])
    events = list(Agent(backend, tools=[get_weather], native_tools=True, plan=True, model_verify=False).stream(
        "What is the weather in Paris?"))
    first = next(e for e in events if isinstance(e, Verdict))
    assert "names_an_uncalled_tool" in first.rules and "cut_off" not in first.rules
    assert events[-1].answer == "It is sunny in Paris."


def test_a_long_typed_answer_is_not_taken_for_a_cut_one():
    class Report(BaseModel):
        summary: str

    long_json = json.dumps({"summary": "sunny in Paris " * 15})
    backend = ScriptedBackend(replies=[json.dumps({"steps": ["Ask for the weather"]}),
                                       [ToolCall.create("c1", "get_weather", {"city": "Paris"})], long_json])
    result = Agent(backend, tools=[get_weather], native_tools=True, plan=True, model_verify=False,
                   output_type=Report).run("What is the weather in Paris?")
    assert result.answer == long_json


def test_a_direct_answer_cut_at_the_plan_bound_is_refused_too():
    cut = ("Paris has a mild climate and the weather there today, as on most days in this season, is likely "
           "to be sunny with a few clouds in the afternoon and a light wind from the west, and")[:MAX_STRING]
    cut = (cut + " and so on" * 20)[:MAX_STRING]
    backend = ScriptedBackend(replies=[json.dumps({"answer": cut}), json.dumps({"steps": ["Ask for the weather"]}),
                                       [ToolCall.create("c1", "get_weather", {"city": "Paris"})], "It is sunny in Paris."])
    events = list(Agent(backend, tools=[get_weather], native_tools=True, plan=True, model_verify=False,
                        checks=DEFAULT).stream(
        "What is the weather in Paris?"))
    assert next(e for e in events if isinstance(e, Verdict)).rules == ["cut_off"]
    assert events[-1].answer == "It is sunny in Paris."
