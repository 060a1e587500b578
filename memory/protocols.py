"""What the agent and the TUI need of a memory, so that any store (ours or a user's) can serve."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from memory.search import Hit


class RunLog(Protocol):
    """Where an agent's runs are recorded, event by event (memory.traces.Traces)."""

    def start(self, task: str, backend: str | None = None, model: str | None = None) -> str: ...
    def log(self, run_id: str, event: Any) -> None: ...
    def finish(self, run_id: str, status: str, answer: str | None = None, verified: bool | None = None) -> None: ...


@runtime_checkable
class MemoryLike(Protocol):
    """search: what the agent recalls before planning. traces: where runs are logged (None: nowhere).
    conversations: where the TUI saves chats (None: it does not)."""

    traces: RunLog | None
    conversations: Any

    def search(self, query: str, k: int = 5) -> list[Hit]: ...
