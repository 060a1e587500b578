"""The agent's act turn in the model's own tool-call format, on tiny models of the families that
have one: the call is forced valid by grammar, and its result goes back through the template's
tool role (Qwen2.5 <tool_response>, Llama 3.1 ipython, Mistral [TOOL_RESULTS])."""

import json
from typing import Literal

import pytest

from agent import Agent
from agent.events import Final, ToolCalled, ToolReturned
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
