"""Chat conversations, saved whole after each turn so a later session can reopen them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

import sqlite_utils

from backends.types import Message

TITLE_CHARS = 80


class Conversations:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def save(self, messages: list[Message], conversation_id: str | None = None) -> str:
        """Stores the conversation (replacing an earlier save of the same id); returns its id."""
        if not messages:
            raise ValueError("an empty conversation is not saved")
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        first = next((m.content for m in messages if m.role == "user" and m.content), "(no user message)")
        conversation_id = conversation_id or uuid.uuid4().hex[:16]
        existing = self.db.execute("SELECT created_at FROM conversations WHERE id = ?", [conversation_id]).fetchone()
        self.db["conversations"].upsert({
            "id": conversation_id, "title": " ".join(first.split())[:TITLE_CHARS],
            "messages": json.dumps([m.model_dump(exclude_none=True) for m in messages], ensure_ascii=False),
            "created_at": existing[0] if existing else now, "updated_at": now,
        }, pk="id")
        return conversation_id

    def recent(self, limit: int = 30) -> list[dict[str, Any]]:
        """id, title, turns, updated_at of the latest conversations, newest first."""
        rows = self.db.query("SELECT id, title, messages, updated_at FROM conversations "
                             "ORDER BY updated_at DESC LIMIT ?", [limit])
        return [{"id": r["id"], "title": r["title"], "updated_at": r["updated_at"],
                 "turns": sum(1 for m in json.loads(r["messages"]) if m["role"] == "user")} for r in rows]

    def load(self, conversation_id: str) -> list[Message]:
        row = self.db.execute("SELECT messages FROM conversations WHERE id = ?", [conversation_id]).fetchone()
        if row is None:
            raise KeyError(f"no conversation {conversation_id!r}")
        return [Message.model_validate(m) for m in json.loads(row[0])]
