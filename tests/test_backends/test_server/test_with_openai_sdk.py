"""The official openai SDK, as a real client, against `tokentrail serve` running the default model."""

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.model

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]}}}
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer", "minimum": 0, "maximum": 150}}}


@pytest.fixture(scope="module")
def served():
    from backends.local.model_cache import pull

    pull("smollm2"), pull("minilm")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # --parallel 4: every request here goes through the batching engine, the 20 concurrent streams below included
    command = [sys.executable, "-m", "cli", "serve", "--port", str(port), "--api-key", "test-key", "--parallel", "4"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"tokentrail serve did not start:\n{process.stdout.read()}")
        time.sleep(0.2)
    yield f"{url}/v1"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served, api_key="test-key", max_retries=0)


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_plain_and_streamed_completions_agree_at_temperature_zero(client):
    plain = client.chat.completions.create(model="smollm2", messages=_ask("What is the capital of France?"),
                                           temperature=0, max_tokens=24)
    text = plain.choices[0].message.content
    assert text and plain.choices[0].finish_reason in ("stop", "length") and plain.usage.completion_tokens > 0
    stream = client.chat.completions.create(model="smollm2", messages=_ask("What is the capital of France?"),
                                            temperature=0, max_tokens=24, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text


def test_tool_call(client):
    reply = client.chat.completions.create(model="smollm2", messages=_ask("What's the weather in Paris?"),
                                           tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=60)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and set(json.loads(call.function.arguments)) == {"city"}
    stream = client.chat.completions.create(model="smollm2", messages=_ask("What's the weather in Rome?"),
                                            tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=60,
                                            stream=True)
    deltas = [tc for c in stream if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas and deltas[0].function.name == "get_weather" and json.loads(deltas[0].function.arguments)["city"]


def test_json_schema_response_validates(client):
    for temperature, seed in ((0, None), (1.0, 7), (1.0, 8)):
        reply = client.chat.completions.create(
            model="smollm2", messages=_ask("Make up a person."), temperature=temperature, seed=seed, max_tokens=60,
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
        data = json.loads(reply.choices[0].message.content)
        assert set(data) == {"name", "age"} and isinstance(data["age"], int) and 0 <= data["age"] <= 150


def test_a_seeded_request_gives_the_same_reply_again(client):
    system = {"role": "system", "content": "You are a storyteller for children: short, kind and simple stories. " * 3}

    def story(topic: str) -> str:
        reply = client.chat.completions.create(model="smollm2", messages=[system, *_ask(f"A story about {topic}.")],
                                               temperature=1.0, top_p=0.95, seed=11, max_tokens=50)
        return reply.choices[0].message.content

    first = story("a cat on a ship")
    story("a dog in a garden")  # shares the system prompt: the cache now holds another prompt's rows
    assert story("a cat on a ship") == first


def test_logprobs(client):
    reply = client.chat.completions.create(model="smollm2", messages=_ask("Say hi."), temperature=0, max_tokens=8,
                                           logprobs=True, top_logprobs=3)
    tokens = reply.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == reply.choices[0].message.content
    for t in tokens:  # greedy: the chosen token is the most likely one
        assert len(t.top_logprobs) == 3 and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-5


def test_embeddings(client):
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat sat", "a kitten sat", "stock prices"])
    vectors = [r.embedding for r in result.data]
    assert len(vectors) == 3 and len(vectors[0]) == 384
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])


def test_sdk_errors(served):
    bad_key = openai.OpenAI(base_url=served, api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()
    good = openai.OpenAI(base_url=served, api_key="test-key", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        good.chat.completions.create(model="gpt-9", messages=_ask("hi"))
    with pytest.raises(openai.BadRequestError):
        good.chat.completions.create(model="smollm2", messages=_ask("hi"), n=17)


def test_n_choices_come_back_whole_and_streamed(client):
    asked = dict(model="smollm2", messages=_ask("Name a colour."), max_tokens=8, temperature=1.0, seed=3, n=3)
    whole = client.chat.completions.create(**asked)
    assert [c.index for c in whole.choices] == [0, 1, 2] and whole.usage.completion_tokens >= 3
    texts = [c.message.content for c in whole.choices]
    assert len(set(texts)) > 1  # seeds 3, 4 and 5
    streamed = {0: "", 1: "", 2: ""}
    for part in client.chat.completions.create(**asked, stream=True):
        for choice in part.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert list(streamed.values()) == texts  # the same seeds, the same tokens, whichever way they came


def test_twenty_concurrent_streams_complete(client):
    def one(i: int) -> tuple[str, str]:
        stream = client.chat.completions.create(model="smollm2", messages=_ask(f"Count to {i}."), max_tokens=6,
                                                temperature=0, stream=True)
        chunks = [c for c in stream if c.choices]
        return "".join(c.choices[0].delta.content or "" for c in chunks), chunks[-1].choices[0].finish_reason

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(1, 21)))
    assert len(results) == 20 and all(text and finish in ("stop", "length") for text, finish in results)


def test_agent_over_http(served):
    from agent import Agent
    from backends import load_backend
    from tools import ToolRegistry

    backend = load_backend("openai", base_url=served, model="smollm2", api_key="test-key")
    calculator = ToolRegistry.with_builtins(".").get("calculator")
    result = Agent(backend, tools=[calculator]).run("What is 37 * 91? Use the calculator.")
    assert any(e.type == "tool_result" and e.ok and e.output == "3367" for e in result.events)
    assert result.answer is not None and "3367" in result.answer


def test_usage_reports_the_cached_prompt_prefix(client):
    system = {"role": "system", "content": "You answer in one short sentence about geography. " * 10}
    asked = []
    for question in ("What is the capital of Italy?", "What is the capital of Spain?"):
        reply = client.chat.completions.create(model="smollm2", messages=[system, *_ask(question)], max_tokens=8,
                                               temperature=0)
        asked.append(reply.usage)
    second = asked[1]
    assert 64 <= second.prompt_tokens_details.cached_tokens < second.prompt_tokens  # whole chunks of 64
    streamed = client.chat.completions.create(model="smollm2", messages=[system, *_ask("And of France?")], max_tokens=4,
                                              temperature=0, stream=True, stream_options={"include_usage": True})
    usage = [chunk.usage for chunk in streamed if chunk.usage is not None]
    assert usage and usage[0].prompt_tokens_details.cached_tokens >= 64
