"""The `openai` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp's
server, Ollama, `tokentrail serve`, or a hosted API) behind the Backend protocol.

Streaming comes as server-sent events; tools, JSON Schema answers and logprobs map onto the
request fields those servers share. Failures before the first byte (429, 5xx, a dropped
connection) are retried with backoff; 401, 404 and refused connections become errors that
say what to fix.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from backends.base import BackendError, say_no_attention
from backends.scripted import ScriptedTokenizer
from backends.types import FinishReason, Generation, GenerationRequest, Message, SamplingParams, TokenEvent, ToolCall, Usage

DEFAULT_CONTEXT_WINDOW = 8192
UNKNOWN_TOKEN_ID = -1  # the server does not say which ids it sampled
_FINISH: dict[str, FinishReason] = {"stop": "eos", "length": "length", "tool_calls": "tool_calls",
                                    "function_call": "tool_calls", "content_filter": "stop"}
_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend:
    """A chat-completions server at `base_url` (which usually ends in /v1).

    The tokenizer is an estimate (words and punctuation) used for context budgeting; the
    server's own tokenizer decides what the model sees.
    """

    name = "openai"
    supports_tool_calls = supports_logprobs = True
    supports_attention = False
    native_tool_calls = False  # the server's template is unknown here: the agent keeps its JSON act schema

    def __init__(
        self,
        base_url: str = "https://api.openai.com/v1",
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        context_window: int | None = None,
        constraints: bool = True,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=self.base_url, headers={**auth, **(headers or {})},
                                    timeout=httpx.Timeout(timeout, connect=10.0), transport=transport)
        self.max_retries = max_retries
        self.supports_constraints = constraints  # servers that ignore response_format should say False
        self.tokenizer = ScriptedTokenizer()
        self._model = model
        self._context_window = context_window

    # what the server has

    def _models(self) -> list[dict[str, Any]]:
        return self._request("GET", "/models").json().get("data", [])

    @property
    def model_name(self) -> str:
        if self._model is None:
            ids = [m.get("id") for m in self._models()]
            if len(ids) != 1:
                raise BackendError(f"{self.base_url} serves {len(ids)} models ({', '.join(map(str, ids))}); "
                                   "name one with model=...")
            self._model = str(ids[0])
        return self._model

    @property
    def context_window(self) -> int:
        if self._context_window is None:
            self._context_window = DEFAULT_CONTEXT_WINDOW
            try:  # vLLM and tokentrail serve list it; others do not
                card = next((m for m in self._models() if m.get("id") == self.model_name), {})
                self._context_window = int(card.get("max_model_len") or DEFAULT_CONTEXT_WINDOW)
            except (BackendError, ValueError, TypeError):
                pass
        return self._context_window

    def render(self, messages: Sequence[Message], tools: list[dict[str, Any]] | None = None) -> str:
        """An estimate of the prompt, for counting: the server applies the real chat template."""
        head = [json.dumps(tools)] if tools else []
        return "\n".join(head + [f"{m.role}: {m.content or ''}{m.tool_calls or ''}" for m in messages]) + "\nassistant:"

    # requests

    def _body(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
        say_no_attention(self, request)
        params = request.sampling
        if params.beam_width > 1:
            raise BackendError("the openai backend does not do beam search; use beam_width=1")
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": [m.model_dump(exclude_none=True) for m in request.messages],
            "temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens,
            "stream": stream,
        }
        body.update(_optional_sampling(params))
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.tools:
            body["tools"] = request.tools
            choice = request.tool_choice
            if choice is not None:
                named = choice not in ("auto", "none", "required")
                body["tool_choice"] = {"type": "function", "function": {"name": choice}} if named else choice
                body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.constraint is not None:
            if request.constraint.json_schema is None:
                raise BackendError("OpenAI-compatible servers constrain output by JSON Schema only, "
                                   "not by regex or Lark grammar")
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "response", "schema": request.constraint.json_schema, "strict": True}}
        return body

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, stream: bool = False) -> httpx.Response:
        """Sends, retrying 429/5xx and dropped connections with backoff; returns a 2xx response."""
        for attempt in range(self.max_retries + 1):
            try:
                sent = self._client.build_request(method, path, json=body)
                response = self._client.send(sent, stream=stream)
            except httpx.ConnectError as exc:
                if attempt < self.max_retries and "refused" not in str(exc).lower():
                    self._sleep(attempt, None)
                    continue
                raise BackendError(f"cannot connect to {self.base_url}: {exc}. Is the server running, "
                                   "and is base_url right?") from exc
            except httpx.TimeoutException as exc:
                if attempt < self.max_retries:
                    self._sleep(attempt, None)
                    continue
                raise BackendError(f"{self.base_url} did not answer in time ({type(exc).__name__}); "
                                   "raise timeout= or check the server") from exc
            if response.status_code < 400:
                return response
            if response.status_code in _RETRY_STATUS and attempt < self.max_retries:
                response.close()
                self._sleep(attempt, response.headers.get("retry-after"))
                continue
            if stream:
                response.read()
            raise BackendError(self._explain(response, body))
        raise AssertionError("unreachable")

    @staticmethod
    def _sleep(attempt: int, retry_after: str | None) -> None:
        try:
            delay = float(retry_after) if retry_after else 0.5 * 2**attempt
        except ValueError:
            delay = 0.5 * 2**attempt
        time.sleep(min(delay, 30.0) + random.uniform(0, 0.1))

    def _explain(self, response: httpx.Response, body: dict[str, Any] | None) -> str:
        try:
            error = response.json().get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
        except (ValueError, AttributeError):
            error, message = {}, response.text[:300]
        status, url = response.status_code, str(response.request.url)
        if status == 401:
            return f"{url} refused the API key (401): {message}. Set OPENAI_API_KEY or pass api_key=..."
        if status == 404 and (isinstance(error, dict) and error.get("code") == "model_not_found" or "model" in str(message)):
            model = (body or {}).get("model", self._model)
            return f"model {model!r} was not found at {self.base_url} (404): {message}"
        if status == 404:
            return f"{url} does not exist (404): is base_url right? It usually ends in /v1"
        return f"{url} answered {status}: {message}"

    # the Backend protocol

    def stream(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        response = self._request("POST", "/chat/completions", self._body(request, stream=True), stream=True)
        return self._events(response)

    def _events(self, response: httpx.Response) -> Iterator[TokenEvent]:
        calls: dict[int, dict[str, str]] = {}
        finish: FinishReason | None = None
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    payload = json.loads(data)
                except json.JSONDecodeError as exc:
                    raise BackendError(f"{self.base_url} sent a malformed stream event: {data[:200]!r}") from exc
                if "error" in payload:
                    raise BackendError(f"{self.base_url} failed mid-stream: {payload['error']}")
                for choice in payload.get("choices") or []:
                    delta = choice.get("delta") or {}
                    for part in delta.get("tool_calls") or []:
                        slot = calls.setdefault(part.get("index", len(calls)), {"id": "", "name": "", "arguments": ""})
                        function = part.get("function") or {}
                        slot["id"] = part.get("id") or slot["id"]
                        slot["name"] += function.get("name") or ""
                        slot["arguments"] += function.get("arguments") or ""
                    yield from _content_events(delta.get("content") or "", (choice.get("logprobs") or {}).get("content"))
                    if choice.get("finish_reason"):
                        finish = _FINISH.get(choice["finish_reason"], "eos")
        except httpx.HTTPError as exc:
            raise BackendError(f"the stream from {self.base_url} broke off: {exc}") from exc
        finally:
            response.close()
        if finish is None:
            raise BackendError(f"the stream from {self.base_url} ended without a finish reason")
        parsed = [ToolCall.create(c["id"] or f"call_{i}", c["name"], c["arguments"] or "{}") for i, c in sorted(calls.items())]
        yield TokenEvent(text="", token_id=UNKNOWN_TOKEN_ID, finish_reason=finish, tool_calls=parsed)

    def generate(self, request: GenerationRequest) -> Generation:
        data = self._request("POST", "/chat/completions", self._body(request, stream=False)).json()
        try:
            choice, usage = data["choices"][0], data.get("usage") or {}
            message = choice["message"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"{self.base_url} sent a reply without choices: {str(data)[:300]}") from exc
        events = list(_content_events(message.get("content") or "", (choice.get("logprobs") or {}).get("content")))
        calls = [ToolCall.create(c.get("id") or f"call_{i}", c["function"]["name"], c["function"].get("arguments") or "{}")
                 for i, c in enumerate(message.get("tool_calls") or [])]
        finish = _FINISH.get(choice.get("finish_reason") or "stop", "eos")
        events.append(TokenEvent(text="", token_id=UNKNOWN_TOKEN_ID, finish_reason=finish, tool_calls=calls))
        return Generation(
            text="".join(e.text for e in events), token_ids=[e.token_id for e in events[:-1]], finish_reason=finish,
            usage=Usage(prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0)),
            events=events, tool_calls=calls,
        )

    def close(self) -> None:
        self._client.close()


def _optional_sampling(params: SamplingParams) -> dict[str, Any]:
    """Fields sent only when they differ from the default: not every server knows them all."""
    out: dict[str, Any] = {}
    if params.stop:
        out["stop"] = params.stop
    if params.seed is not None:
        out["seed"] = params.seed
    if params.frequency_penalty:
        out["frequency_penalty"] = params.frequency_penalty
    if params.presence_penalty:
        out["presence_penalty"] = params.presence_penalty
    if params.logit_bias:
        out["logit_bias"] = {str(k): v for k, v in params.logit_bias.items()}
    if params.logprobs:
        out["logprobs"], out["top_logprobs"] = True, params.logprobs
    for name, default in (("top_k", 0), ("min_p", 0.0), ("repetition_penalty", 1.0)):  # vLLM / llama.cpp extensions
        if getattr(params, name) != default:
            out[name] = getattr(params, name)
    return out


def _content_events(content: str, logprobs: list[dict[str, Any]] | None) -> Iterator[TokenEvent]:
    """One event per token when the server sent logprobs that spell out the content; else one for the text."""
    if logprobs and "".join(e.get("token", "") for e in logprobs) == content:
        for entry in logprobs:
            top = [(t.get("token", ""), float(t.get("logprob", 0.0))) for t in entry.get("top_logprobs") or []]
            yield TokenEvent(text=entry.get("token", ""), token_id=UNKNOWN_TOKEN_ID, token=entry.get("token", ""),
                             logprob=float(entry.get("logprob", 0.0)), top_logprobs=top)
    elif content:
        first = (logprobs or [{}])[0]
        yield TokenEvent(text=content, token_id=UNKNOWN_TOKEN_ID, token=content,
                         logprob=float(first["logprob"]) if "logprob" in first else None)
