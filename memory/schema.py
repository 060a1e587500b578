"""The memory database's schema, as numbered migrations tracked in PRAGMA user_version."""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 1: documents, chunks with an FTS5 index, embeddings cached by content, notes, run traces.
    """
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL UNIQUE,
        title TEXT,
        content_hash TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        chunk_count INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY,
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        text TEXT NOT NULL,
        token_count INTEGER NOT NULL,
        content_hash TEXT NOT NULL
    );
    CREATE INDEX chunks_by_document ON chunks(document_id, position);
    CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id', tokenize='porter unicode61');
    CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TRIGGER chunks_au AFTER UPDATE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TABLE embeddings (
        content_hash TEXT NOT NULL,
        model TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (content_hash, model)
    );
    CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        document_id INTEGER REFERENCES documents(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        task TEXT NOT NULL,
        backend TEXT,
        model TEXT,
        status TEXT NOT NULL DEFAULT 'running',
        answer TEXT,
        verified INTEGER,
        started_at TEXT NOT NULL,
        ended_at TEXT
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX events_by_run ON events(run_id, seq);
    """,
    # 2: chat conversations, saved whole after each turn so they can be reopened.
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        messages TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX conversations_by_update ON conversations(updated_at);
    """,
    # 3: the user's verdict on a run's answer ('good' or 'bad'), given in the chat; training reads it.
    """
    ALTER TABLE runs ADD COLUMN feedback TEXT CHECK (feedback IN ('good', 'bad'));
    """,
]


def migrate(conn: sqlite3.Connection) -> int:
    """Brings the database to the latest version; safe when several processes open it at once."""
    conn.execute("BEGIN IMMEDIATE")  # one migrator at a time; the others wait on the busy timeout
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Splits a script on complete statements (executescript would commit our transaction)."""
    out, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    return [s for s in out if s]
