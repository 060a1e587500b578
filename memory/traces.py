"""Run traces: every event of an agent run, one row each, so a run can be read after the fact."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

import sqlite_utils
from pydantic import BaseModel


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Traces:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def start(self, task: str, backend: str | None = None, model: str | None = None) -> str:
        run_id = uuid.uuid4().hex[:16]
        self.db["runs"].insert({"id": run_id, "task": task, "backend": backend, "model": model, "status": "running",
                                "started_at": _now()})
        return run_id

    def log(self, run_id: str, event: BaseModel | dict[str, Any]) -> None:
        # pydantic's JSON, as `run --json` prints it: -inf logprobs become null, never -Infinity (not JSON)
        payload = json.loads(event.model_dump_json()) if isinstance(event, BaseModel) else dict(event)
        kind = str(payload.get("type", "event"))
        self.db.execute(
            "INSERT INTO events (run_id, seq, type, payload, created_at) "
            "VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM events WHERE run_id = ?), ?, ?, ?)",
            [run_id, run_id, kind, json.dumps(payload, ensure_ascii=False, default=str, allow_nan=False), _now()],
        )

    def finish(self, run_id: str, status: str, answer: str | None = None, verified: bool | None = None) -> None:
        self.db["runs"].update(run_id, {"status": status, "answer": answer, "verified": verified, "ended_at": _now()})

    def rate(self, run_id: str, good: bool) -> None:
        """The user's verdict on the run's answer; `tokentrail train data` trusts it over the agent's."""
        updated = self.db.execute("UPDATE runs SET feedback = ? WHERE id = ? AND status != 'running'",
                                  ["good" if good else "bad", run_id]).rowcount
        if not updated:
            raise ValueError(f"no finished run {run_id!r} to rate; `tokentrail logs` lists the runs")

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT r.*, (SELECT count(*) FROM events e WHERE e.run_id = r.id) AS events "
                                  "FROM runs r ORDER BY started_at DESC LIMIT ?", [limit]))

    def events(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT seq, type, payload, created_at FROM events WHERE run_id = ? ORDER BY seq", [run_id])
        return [{**row, "payload": json.loads(row["payload"])} for row in rows]
