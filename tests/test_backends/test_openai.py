"""The openai backend against our own server (scripted engine), and its error paths."""

import json
import socket

import httpx
import pytest

from agent import Agent
from backends import BackendError, GenerationRequest, Message, SamplingParams, ToolCall, load_backend
from backends.openai import OpenAIBackend
from backends.scripted import ScriptedBackend
from backends.server.app import OpenAIServer
from backends.server.run import background
from tools import tool

HELLO = GenerationRequest(messages=[Message(role="user", content="hello there")], sampling=SamplingParams(logprobs=2))


@pytest.fixture
def server():
    engine = ScriptedBackend()
    with background(OpenAIServer(engine, model_id="scripted", api_key="k")) as url:
        yield url, engine


def test_stream_and_generate_over_http(server):
    url, engine = server
    backend = load_backend("openai", base_url=url, model="scripted", api_key="k")
    events = list(backend.stream(HELLO))
    assert "".join(e.text for e in events) == "You said: hello there"
    assert events[-1].finish_reason == "eos"
    assert all(e.logprob is not None and len(e.top_logprobs) == 2 for e in events[:-1])
    generation = backend.generate(HELLO)
    assert generation.text == "You said: hello there" and generation.finish_reason == "eos"
    assert generation.usage.prompt_tokens > 0 and generation.usage.completion_tokens > 0
    sent = engine.requests[-1]
    assert sent.sampling.logprobs == 2 and sent.sampling.temperature == HELLO.sampling.temperature


def test_model_and_window_come_from_the_server(server, monkeypatch):
    url, _ = server
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    backend = OpenAIBackend(base_url=url)
    assert backend.model_name == "scripted" and backend.context_window == 8192


def test_tool_calls_and_json_schema_round_trip(server):
    url, engine = server
    call = ToolCall.create("call_9", "add", {"a": 1, "b": 2})
    engine._replies = [[call], '{"x": 1}']
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    backend = OpenAIBackend(base_url=url, model="scripted", api_key="k")
    events = list(backend.stream(HELLO.model_copy(update={"tools": tools, "tool_choice": "add"})))
    assert events[-1].finish_reason == "tool_calls" and events[-1].tool_calls == [call]
    assert engine.requests[-1].tool_choice == "add"
    from backends import Constraint

    generation = backend.generate(HELLO.model_copy(update={"constraint": Constraint(json_schema={"type": "object"})}))
    assert json.loads(generation.text) == {"x": 1}
    assert engine.requests[-1].constraint.json_schema == {"type": "object"}


def test_agent_runs_over_http(server):
    url, engine = server

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    engine._replies = [json.dumps({"steps": ["Add the numbers."]}),
                       json.dumps({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}),
                       json.dumps({"answer": "5"}), json.dumps({"passed": True, "reasons": []})]
    result = Agent(OpenAIBackend(base_url=url, model="scripted", api_key="k"), tools=[add]).run("2 + 3?")
    assert result.answer == "5" and result.verified
    assert [e.type for e in result.events if e.type in ("tool_call", "tool_result")] == ["tool_call", "tool_result"]
    assert engine.requests[1].constraint is not None  # the act turn was constrained through response_format


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_is_a_clear_error():
    backend = OpenAIBackend(base_url=f"http://127.0.0.1:{_free_port()}/v1", model="m", max_retries=0)
    with pytest.raises(BackendError, match="cannot connect to .* Is the server running"):
        backend.generate(HELLO)


def test_bad_key_unknown_model_and_wrong_path(server):
    url, _ = server
    with pytest.raises(BackendError, match=r"refused the API key \(401\).*OPENAI_API_KEY"):
        OpenAIBackend(base_url=url, model="scripted", api_key="wrong").generate(HELLO)
    with pytest.raises(BackendError, match=r"model 'gpt-9' was not found"):
        list(OpenAIBackend(base_url=url, model="gpt-9", api_key="k").stream(HELLO))
    with pytest.raises(BackendError, match="does not exist .* ends in /v1"):
        OpenAIBackend(base_url=url.removesuffix("/v1"), model="scripted", api_key="k").generate(HELLO)


def test_malformed_requests_are_refused_before_sending(server):
    url, _ = server
    backend = OpenAIBackend(base_url=url, model="scripted", api_key="k")
    from backends import Constraint

    with pytest.raises(BackendError, match="JSON Schema only"):
        backend.generate(HELLO.model_copy(update={"constraint": Constraint(regex="a+")}))
    with pytest.raises(BackendError, match="beam search"):
        backend.generate(HELLO.model_copy(update={"sampling": SamplingParams(temperature=0, beam_width=2)}))


def _reply(text: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def test_retries_429_and_5xx_with_backoff_then_succeeds(monkeypatch):
    monkeypatch.setattr("backends.openai.time.sleep", lambda s: None)
    statuses = [429, 503, 200]

    def handler(request: httpx.Request) -> httpx.Response:
        status = statuses.pop(0)
        return httpx.Response(status, json=_reply("ok") if status == 200 else {"error": {"message": "busy"}})

    backend = OpenAIBackend(base_url="http://x/v1", model="m", transport=httpx.MockTransport(handler))
    assert backend.generate(HELLO).text == "ok" and statuses == []


def test_gives_up_after_max_retries(monkeypatch):
    monkeypatch.setattr("backends.openai.time.sleep", lambda s: None)
    transport = httpx.MockTransport(lambda r: httpx.Response(500, json={"error": {"message": "boom"}}))
    backend = OpenAIBackend(base_url="http://x/v1", model="m", max_retries=2, transport=transport)
    with pytest.raises(BackendError, match="answered 500: boom"):
        backend.generate(HELLO)


def test_a_stream_that_breaks_off_or_lies_is_an_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\ndata: [DONE]\n\n',
                              headers={"content-type": "text/event-stream"})

    backend = OpenAIBackend(base_url="http://x/v1", model="m", transport=httpx.MockTransport(handler))
    with pytest.raises(BackendError, match="without a finish reason"):
        list(backend.stream(HELLO))
    garbage = httpx.MockTransport(lambda r: httpx.Response(200, content=b"data: {oops\n\n"))
    with pytest.raises(BackendError, match="malformed stream event"):
        list(OpenAIBackend(base_url="http://x/v1", model="m", transport=garbage).stream(HELLO))
