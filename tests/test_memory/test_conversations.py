import sqlite3

import pytest

from backends import Message, ToolCall
from memory import Memory


def test_conversations_round_trip_and_update_in_place(tmp_path):
    store = Memory(tmp_path / "m.db", embedder=None)
    first = [Message(role="user", content="  What   is 2+2?\n"), Message(role="assistant", content="4")]
    conversation = store.conversations.save(first)
    longer = [*first, Message(role="user", content="and 3+3?"),
              Message(role="assistant", tool_calls=[ToolCall.create("c1", "add", {"a": 3, "b": 3})]),
              Message(role="tool", tool_call_id="c1", content="6"), Message(role="assistant", content="6")]
    assert store.conversations.save(longer, conversation) == conversation
    other = store.conversations.save([Message(role="user", content="hello")])
    recent = store.conversations.recent()
    assert [c["id"] for c in recent] == [other, conversation]
    assert recent[1]["title"] == "What is 2+2?" and recent[1]["turns"] == 2
    assert store.conversations.load(conversation) == longer
    store.close()


def test_bad_inputs(tmp_path):
    store = Memory(tmp_path / "m.db", embedder=None)
    with pytest.raises(ValueError, match="empty"):
        store.conversations.save([])
    with pytest.raises(KeyError, match="no conversation"):
        store.conversations.load("nope")
    store.close()


def test_an_existing_version_1_database_gains_the_table_and_the_feedback_column(tmp_path):
    path = tmp_path / "old.db"
    store = Memory(path, embedder=None)
    run = store.traces.start("an old run")
    store.traces.finish(run, "done", "42")
    store.close()
    with sqlite3.connect(path) as conn:  # make it look like a database from before conversations existed
        conn.execute("DROP TABLE conversations")
        conn.execute("ALTER TABLE runs DROP COLUMN feedback")
        conn.execute("PRAGMA user_version = 1")
    reopened = Memory(path, embedder=None)
    assert reopened.conversations.recent() == []
    reopened.traces.rate(run, good=True)
    assert reopened.traces.runs()[0]["feedback"] == "good"
    reopened.close()
