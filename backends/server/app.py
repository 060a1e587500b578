"""`tokentrail serve`: an OpenAI-compatible HTTP API over a Backend (our local engine by default).

Routes: GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions (streamed as
server-sent events or not), POST /v1/embeddings (when an embedder is given), GET /health.
Errors have the OpenAI shape, so the clients people already use report them properly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from backends.base import Backend, BackendError
from backends.embedders import Embedder
from backends.server.queue import GenerationQueue
from backends.server.wire import (
    FINISH,
    APIError,
    ChatCompletionRequest,
    chunk,
    completion,
    invalid,
    logprob_entry,
    sse,
    tool_call_dicts,
    usage_dict,
)
from backends.types import TokenEvent, Usage

MAX_BODY_BYTES = 4 * 2**20
MAX_EMBEDDING_INPUTS = 2048


class OpenAIServer:
    def __init__(self, backend: Backend, model_id: str | None = None, api_key: str | None = None,
                 embedder: Embedder | None = None, max_waiting: int = 64, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.backend = backend
        self.model_id = model_id or backend.model_name or backend.name
        self.api_key = api_key or None
        self.embedder = embedder
        self.queue = GenerationQueue(backend, max_waiting)
        self.max_body_bytes = max_body_bytes
        self.created = int(time.time())
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/v1/models/{model_id:path}", self.get_model, methods=["GET"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/health", self.health, methods=["GET"]),
            ],
            exception_handlers={APIError: self._api_error, HTTPException: self._http_error, Exception: self._crash},
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        self.queue.close()

    # errors

    @staticmethod
    async def _api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return JSONResponse(exc.body(), status_code=exc.status)

    @staticmethod
    async def _http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(APIError(exc.status_code, message, code=code).body(), status_code=exc.status_code)

    @staticmethod
    async def _crash(request: Request, exc: Exception) -> Response:
        error = APIError(500, f"the server failed: {type(exc).__name__}: {exc}", type="server_error")
        return JSONResponse(error.body(), status_code=500)

    # request handling

    def _authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
            raise APIError(401, "Incorrect API key provided. Pass the key given to `tokentrail serve --api-key` "
                                "as 'Authorization: Bearer <key>'.", code="invalid_api_key")

    async def _json_body(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise APIError(413, f"the request body is {declared} bytes; the limit is {self.max_body_bytes}",
                           code="request_too_large")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > self.max_body_bytes:
                raise APIError(413, f"the request body exceeds {self.max_body_bytes} bytes", code="request_too_large")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"the request body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise APIError(400, "the request body must be a JSON object")
        return data

    def _model_card(self, model_id: str) -> dict[str, Any]:
        card: dict[str, Any] = {"id": model_id, "object": "model", "created": self.created, "owned_by": "tokentrail"}
        if model_id == self.model_id:
            card["max_model_len"] = self.backend.context_window
        return card

    def _chat_ids(self) -> list[str]:
        """The id we list, and the model's own name, which clients may have from elsewhere."""
        return list(dict.fromkeys([self.model_id, self.backend.model_name]))

    def _model_ids(self) -> list[str]:
        return [self.model_id] + ([self.embedder.name] if self.embedder is not None else [])

    def _check_model(self, name: str, accepted: list[str]) -> None:
        if name not in accepted:  # named by what /v1/models lists, though a model's own name is accepted too
            listed = [m for m in self._model_ids() if m in accepted] or accepted
            raise APIError(404, f"The model {name!r} does not exist; this server has {', '.join(map(repr, listed))}.",
                           param="model", code="model_not_found")

    # routes

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.model_id, "waiting": self.queue.waiting})

    async def list_models(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse({"object": "list", "data": [self._model_card(m) for m in self._model_ids()]})

    async def get_model(self, request: Request) -> Response:
        self._authorize(request)
        model_id = request.path_params["model_id"]
        self._check_model(model_id, self._model_ids())
        return JSONResponse(self._model_card(model_id))

    async def chat_completions(self, request: Request) -> Response:
        data = await self._json_body(request)
        try:
            wire = ChatCompletionRequest.model_validate(data)
            self._check_model(wire.model, self._chat_ids())
            ours = wire.to_request(default_max_tokens=self.backend.context_window)
        except ValidationError as exc:
            raise invalid(exc) from exc
        except ValueError as exc:
            raise APIError(400, f"invalid request: {exc}") from exc
        opened = []
        try:
            for index in range(wire.n):  # n choices: n sequences, decoded together when the engine batches
                seed = ours.sampling.seed
                choice = ours if seed is None or index == 0 else ours.model_copy(
                    update={"sampling": ours.sampling.model_copy(update={"seed": seed + index})})
                opened.append(await self.queue.open(choice))
        except BackendError as exc:
            for _, events in opened:
                await events.aclose()
            code = "context_length_exceeded" if "context window" in str(exc) else None
            raise APIError(400, str(exc), code=code) from exc
        prompt_tokens, streams = opened[0][0], [events for _, events in opened]
        reply_id = f"chatcmpl-{uuid.uuid4().hex}"
        if wire.stream:
            usage = wire.stream_options is not None and wire.stream_options.include_usage
            return StreamingResponse(self._stream(reply_id, streams, prompt_tokens, wire.logprobs, usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        async def drained(events: AsyncIterator[TokenEvent]) -> list[TokenEvent]:
            return [event async for event in self._guarded(events)]

        choices = list(await asyncio.gather(*(drained(events) for events in streams)))  # decoded side by side
        usage = Usage.of(choices[0], prompt_tokens).model_copy(update={"completion_tokens": sum(map(len, choices))})
        return JSONResponse(completion(reply_id, self.model_id, choices, usage, wire.logprobs))

    @staticmethod
    async def _guarded(events: AsyncIterator[TokenEvent]) -> AsyncIterator[TokenEvent]:
        try:
            async for event in events:
                yield event
        except Exception as exc:
            raise _generation_error(exc) from exc

    @staticmethod
    async def _merged(streams: list[AsyncIterator[TokenEvent]]) -> AsyncIterator[tuple[int, TokenEvent | Exception]]:
        """(choice index, event) as each stream gives them; a stream's error comes in its place, the others go on."""
        merged: asyncio.Queue = asyncio.Queue()

        async def pump(index: int, events: AsyncIterator[TokenEvent]) -> None:
            try:
                async for event in events:
                    await merged.put((index, event))
            except Exception as exc:
                await merged.put((index, exc))
            finally:
                await merged.put((index, None))

        tasks = [asyncio.create_task(pump(i, events)) for i, events in enumerate(streams)]
        try:
            running = len(tasks)
            while running:
                index, item = await merged.get()
                if item is None:
                    running -= 1
                else:
                    yield index, item
        finally:
            for task in tasks:
                task.cancel()

    async def _stream(self, reply_id: str, streams: list[AsyncIterator[TokenEvent]], prompt_tokens: int,
                      logprobs: bool, include_usage: bool) -> AsyncIterator[bytes]:
        created, count, cached = int(time.time()), 0, 0
        for index in range(len(streams)):
            yield sse(chunk(reply_id, self.model_id, created, {"role": "assistant", "content": ""}, index=index))
        async for index, event in self._merged(streams):
            if isinstance(event, Exception):  # the status line is sent already: the error goes in the stream
                yield sse(_generation_error(event).body())
                continue
            count += 1
            cached = cached or event.cached_prompt_tokens or 0
            entries = [logprob_entry(event)] if logprobs and event.finish_reason != "eos" else None
            if event.text or entries:
                yield sse(chunk(reply_id, self.model_id, created, {"content": event.text}, logprobs=entries, index=index))
            if event.tool_calls:
                yield sse(chunk(reply_id, self.model_id, created,
                                {"tool_calls": tool_call_dicts(event.tool_calls, streaming=True)}, index=index))
            if event.finish_reason is not None:
                yield sse(chunk(reply_id, self.model_id, created, {}, finish=FINISH[event.finish_reason], index=index))
        if include_usage:
            usage = usage_dict(Usage(prompt_tokens=prompt_tokens, completion_tokens=count, cached_prompt_tokens=cached))
            yield sse({"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": self.model_id,
                       "choices": [], "usage": usage})
        yield sse("[DONE]")

    async def embeddings(self, request: Request) -> Response:
        data = await self._json_body(request)
        if self.embedder is None:
            raise APIError(404, "this server has no embedding model; `tokentrail pull minilm`, then restart it",
                           param="model", code="model_not_found")
        self._check_model(str(data.get("model")), [self.embedder.name, "minilm"])
        texts = data.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise APIError(400, "input must be a non-empty string or a list of non-empty strings", param="input")
        if len(texts) > MAX_EMBEDDING_INPUTS:
            raise APIError(400, f"at most {MAX_EMBEDDING_INPUTS} inputs per request", param="input")
        encoding = data.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise APIError(400, "encoding_format must be 'float' or 'base64'", param="encoding_format")
        vectors = await asyncio.to_thread(self.embedder.embed, texts)
        tokens = sum(len(self.embedder.spans(t)) for t in texts)
        items = []
        for index, vector in enumerate(vectors):
            value: Any = (base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
                          if encoding == "base64" else [float(x) for x in vector])
            items.append({"object": "embedding", "index": index, "embedding": value})
        return JSONResponse({"object": "list", "data": items, "model": self.embedder.name,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _generation_error(exc: Exception) -> APIError:
    """An error that stopped a valid request part way. Never a 500: the server is fine and the
    next request runs; the message says what stopped this one (for a grammar, the token and its state)."""
    code = "grammar_rejected_token" if "grammar" in str(exc) else "generation_failed"
    detail = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
    return APIError(422, f"generation stopped part way: {detail}", type="generation_error", code=code)
