"""The HTTP server over the scripted backend: wire format, errors, queueing, cancellation."""

import concurrent.futures
import json
import threading
import time

import httpx
import pytest

from backends import ToolCall, load_backend
from backends.scripted import ScriptedBackend
from backends.server.app import OpenAIServer
from backends.server.run import background

BODY = {"model": "scripted", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def served():
    backend = load_backend("scripted")
    with background(OpenAIServer(backend, model_id="scripted", api_key="sekrit")) as url:
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer sekrit"}, timeout=30) as client:
            yield client, backend


def _sse(response: httpx.Response) -> list:
    events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_plain_completion(served):
    client, _ = served
    reply = client.post("/chat/completions", json={**BODY, "logprobs": True, "top_logprobs": 2}).json()
    choice = reply["choices"][0]
    assert reply["object"] == "chat.completion" and reply["model"] == "scripted"
    assert choice["message"] == {"role": "assistant", "content": "You said: hello there"}
    assert choice["finish_reason"] == "stop"
    tokens = choice["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == "You said: hello there"
    assert all(len(t["top_logprobs"]) == 2 and t["logprob"] <= 0 for t in tokens)
    assert reply["usage"]["completion_tokens"] == len(tokens) + 1  # + the end-of-turn token


def test_streamed_completion_is_well_formed(served):
    client, _ = served
    with client.stream("POST", "/chat/completions",
                       json={**BODY, "stream": True, "stream_options": {"include_usage": True}}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = _sse(response)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "You said: hello there"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_tool_calls_come_back_parsed(served):
    client, backend = served
    call = ToolCall.create("call_1", "add", {"a": 1, "b": 2})
    backend._replies = [[call], [call]]
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    body = {**BODY, "tools": [tool], "tool_choice": "required"}
    message = client.post("/chat/completions", json=body).json()["choices"][0]
    assert message["finish_reason"] == "tool_calls" and message["message"]["content"] is None
    assert message["message"]["tool_calls"] == [call.model_dump()]
    with client.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
        chunks = _sse(response)
    deltas = [c["choices"][0]["delta"] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert deltas == [{"tool_calls": [{"index": 0, **call.model_dump()}]}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert backend.requests[-1].tool_choice == "required"


@pytest.mark.parametrize("method, path, body, headers, status, code", [
    ("POST", "/chat/completions", BODY, {"Authorization": "Bearer wrong"}, 401, "invalid_api_key"),
    ("GET", "/models", None, {"Authorization": ""}, 401, "invalid_api_key"),
    ("POST", "/chat/completions", {**BODY, "model": "gpt-9"}, {}, 404, "model_not_found"),
    ("POST", "/chat/completions", {**BODY, "n": 17}, {}, 400, None),
    ("POST", "/chat/completions", {"messages": BODY["messages"]}, {}, 400, None),
    ("POST", "/embeddings", {"model": "minilm", "input": "x"}, {}, 404, "model_not_found"),
    ("GET", "/nowhere", None, {}, 404, "not_found"),
    ("GET", "/chat/completions", None, {}, 405, "method_not_allowed"),
])
def test_errors_have_the_openai_shape(served, method, path, body, headers, status, code):
    client, _ = served
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and error["type"] and error["code"] == code


def test_bad_json_and_oversized_bodies(served):
    client, backend = served
    response = client.post("/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]
    huge = {**BODY, "messages": [{"role": "user", "content": "x" * (5 * 2**20)}]}
    response = client.post("/chat/completions", json=huge)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert backend.requests == []  # nothing reached the model


def test_prompt_longer_than_the_window_is_a_400():
    backend = ScriptedBackend(context_window=8)
    with background(OpenAIServer(backend, model_id="s")) as url:
        response = httpx.post(f"{url}/chat/completions", json={**BODY, "model": "s"})
    assert response.status_code == 400 and "context window" in response.json()["error"]["message"]


def test_models_list(served):
    client, _ = served
    data = client.get("/models").json()["data"]
    assert [m["id"] for m in data] == ["scripted"] and data[0]["max_model_len"] == 8192
    assert client.get("/models/scripted").json()["id"] == "scripted"
    assert client.get("/models/other").status_code == 404


class SlowBackend(ScriptedBackend):
    """Sleeps between tokens and records how many streams run at once."""

    def __init__(self, delay: float) -> None:
        super().__init__(reply_fn=lambda r: "one two three four five")
        self.delay, self.running, self.most_at_once, self.cancelled = delay, 0, 0, 0
        self._count = threading.Lock()

    def stream(self, request):
        inner = super().stream(request)

        def slow():
            with self._count:
                self.running += 1
                self.most_at_once = max(self.most_at_once, self.running)
            finished = False
            try:
                for event in inner:
                    time.sleep(self.delay)
                    yield event
                finished = True
            finally:
                with self._count:
                    self.running -= 1
                    self.cancelled += not finished

        return slow()


def test_twenty_concurrent_streams_queue_and_all_complete():
    backend = SlowBackend(delay=0.002)
    with background(OpenAIServer(backend, model_id="slow")) as url:
        def one(i: int) -> str:
            body = {**BODY, "model": "slow", "stream": True}
            with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=60) as response:
                assert response.status_code == 200
                chunks = _sse(response)
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
            return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            texts = list(pool.map(one, range(20)))
    assert texts == ["one two three four five"] * 20
    assert backend.most_at_once == 1 and len(backend.requests) == 20


def test_a_full_queue_answers_429():
    backend = SlowBackend(delay=0.3)
    with background(OpenAIServer(backend, model_id="slow", max_waiting=1)) as url:
        with httpx.stream("POST", f"{url}/chat/completions", json={**BODY, "model": "slow", "stream": True}) as first:
            assert first.status_code == 200
            second = httpx.post(f"{url}/chat/completions", json={**BODY, "model": "slow"})
            assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_client_that_disconnects_cancels_its_generation():
    backend = SlowBackend(delay=0.2)
    with background(OpenAIServer(backend, model_id="slow")) as url:
        with httpx.stream("POST", f"{url}/chat/completions", json={**BODY, "model": "slow", "stream": True}) as response:
            next(response.iter_lines())
        deadline = time.monotonic() + 5
        while backend.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.cancelled == 1
        after = httpx.post(f"{url}/chat/completions", json={**BODY, "model": "slow"}, timeout=30)
        assert after.json()["choices"][0]["message"]["content"] == "one two three four five"
