"""The openai SDK against `tokentrail serve` on tiny Qwen2.5, Llama 3.1 and Mistral models whose
tool tags are special tokens: forced calls come back as tool_calls, results go back in, and an
engine that disagrees with its grammar ends the reply with an error, never a 500."""

import json

import pytest

from backends.server.app import OpenAIServer
from backends.server.run import background
from tests.fixtures.chat_families import FAMILIES
from tests.test_backends.test_local.test_tool_formats import TOOLS, valid

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module", params=list(FAMILIES))
def served(request, chat_models):
    backend = chat_models[request.param]
    with background(OpenAIServer(backend, model_id="tiny")) as url:
        yield openai.OpenAI(base_url=url, api_key="none", max_retries=0), backend


@pytest.fixture
def client(served):
    return served[0]


def ask(client, **options):
    messages = options.pop("messages", [{"role": "user", "content": "Weather in Paris for 3 days?"}])
    return client.chat.completions.create(model="tiny", messages=messages, tools=TOOLS, temperature=0, max_tokens=120,
                                          **options)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "convert"}}])
def test_forced_calls_come_back_as_tool_calls(client, choice):
    reply = ask(client, tool_choice=choice, parallel_tool_calls=False)
    choice_out = reply.choices[0]
    assert choice_out.finish_reason == "tool_calls" and not choice_out.message.content
    (call,) = choice_out.message.tool_calls
    assert valid(call) and (call.function.name == "convert" or choice == "required")


def test_a_streamed_call_and_the_results_round_trip(client):
    stream = ask(client, tool_choice="required", stream=True)
    deltas = [c.choices[0].delta for c in stream if c.choices]
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert calls and all(json.loads(tc.function.arguments) is not None for tc in calls)
    first = calls[0]
    messages = [{"role": "user", "content": "Weather in Paris for 3 days?"},
                {"role": "assistant", "tool_calls": [{"id": first.id, "type": "function",
                                                      "function": {"name": first.function.name,
                                                                   "arguments": first.function.arguments}}]},
                {"role": "tool", "tool_call_id": first.id, "content": '{"temp": 21}'}]
    reply = ask(client, messages=messages, tool_choice="required")
    assert reply.choices[0].finish_reason == "tool_calls" and valid(reply.choices[0].message.tool_calls[0])


def test_a_grammar_that_disagrees_with_the_engine_ends_the_reply_with_an_error(served, monkeypatch):
    """The bug this replaces: tags spelled as text while the model writes them as one token."""
    from backends.local import tool_calls

    client, backend = served
    if not backend.tool_format.tags:
        pytest.skip("Llama 3.1 writes its calls without tags")
    monkeypatch.setattr(tool_calls, "spelling", lambda tokenizer: json.dumps)
    monkeypatch.setattr(tool_calls, "untagged_rules", lambda parallel: ["untagged: calls"])  # the tag or nothing
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        ask(client, tool_choice="required")
    error = caught.value.body
    assert error["code"] == "grammar_rejected_token" and error["type"] == "generation_error"
    assert "rejected token" in error["message"] and "grammar state" in error["message"]
    stream = ask(client, tool_choice="required", stream=True)
    with pytest.raises(openai.APIError, match="rejected token"):
        list(stream)
    monkeypatch.undo()
    assert ask(client, tool_choice="required").choices[0].finish_reason == "tool_calls"  # the server is still up

