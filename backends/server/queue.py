"""Generations run on worker threads, in arrival order, and stream back to asyncio.

One worker, unless the backend decodes several sequences together (`LocalBackend(parallel=N)`):
then N, and their requests share each step of the engine. Requests past those wait their turn
here instead of crashing; past `max_waiting` the server says it is busy (429) rather than
queueing forever.
A consumer that goes away (a client disconnects) cancels its generation between tokens.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backends.base import Backend
from backends.server.wire import APIError
from backends.types import GenerationRequest, TokenEvent

_STARTED, _DONE = object(), object()


class GenerationQueue:
    def __init__(self, backend: Backend, max_waiting: int = 64) -> None:
        self.backend = backend
        self.max_waiting = max_waiting
        workers = max(1, int(getattr(backend, "parallel", 1) or 1))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokentrail-generate")
        self._lock = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def open(self, request: GenerationRequest) -> tuple[int, AsyncIterator[TokenEvent]]:
        """Waits for this request's turn; (prompt tokens, its events).

        Whatever stops the request before its first token (a prompt too long, a bad schema)
        raises here, so the caller can still answer with an HTTP error.
        """
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise APIError(429, f"the server is busy: {self._waiting} requests are already waiting; retry later",
                               type="server_busy", code="rate_limit_exceeded")
            self._waiting += 1
        loop, queue, cancel = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone (server shutting down)
                cancel.set()

        self._pool.submit(self._work, request, put, cancel)
        try:
            first = await queue.get()
        except asyncio.CancelledError:
            cancel.set()
            raise
        if isinstance(first, BaseException):
            raise first
        return first, self._drain(queue, cancel)

    def _work(self, request: GenerationRequest, put: Callable[[Any], None], cancel: threading.Event) -> None:
        try:
            if cancel.is_set():
                return
            counter = getattr(self.backend, "count_prompt", None)
            prompt_tokens = counter(request) if counter else len(
                self.backend.tokenizer.encode(self.backend.render(request.messages, request.tools)))
            events: Iterator[TokenEvent] = self.backend.stream(request)
            put(prompt_tokens)
            try:
                for event in events:
                    if cancel.is_set():
                        break
                    put(event)
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()  # a generator releases the engine's lock here
        except BaseException as exc:  # handed to the consumer
            put(exc)
        finally:
            with self._lock:
                self._waiting -= 1
            put(_DONE)

    @staticmethod
    async def _drain(queue: asyncio.Queue, cancel: threading.Event) -> AsyncIterator[TokenEvent]:
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
