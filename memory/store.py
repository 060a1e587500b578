"""Memory: one SQLite file of documents, chunks, embeddings, notes and run traces.

Writes of a document happen in one transaction (a crash never leaves half a document);
WAL mode and a busy timeout let several processes write one file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils
from pydantic import BaseModel

from backends.embedders import Embedder, load_embedder
from memory.chunking import chunk_spans, word_spans
from memory.conversations import Conversations
from memory.schema import migrate
from memory.search import Hit, SearchMode, bm25_search, fuse, vector_search
from memory.traces import Traces

BUSY_TIMEOUT_MS = 30_000
MAX_FILE_BYTES = 5 * 1024 * 1024
SKIPPED_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".pytest_cache"}


class MemoryStoreError(RuntimeError):
    pass


class IngestReport(BaseModel):
    added: list[str] = []
    replaced: list[str] = []
    unchanged: list[str] = []
    skipped: list[tuple[str, str]] = []  # (path, why)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Memory:
    def __init__(
        self,
        path: str | Path,
        embedder: Embedder | str | None = "minilm",
        chunk_tokens: int = 200,
        overlap: int = 40,
    ) -> None:
        self.path = Path(path)
        self.embedder: Embedder | None = load_embedder(embedder) if isinstance(embedder, str) else embedder
        self.chunk_tokens, self.overlap = chunk_tokens, overlap
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            raise MemoryStoreError(f"{self.path}: not a usable SQLite memory database ({exc})") from exc
        self.db = sqlite_utils.Database(conn)
        self.traces = Traces(self.db)
        self.conversations = Conversations(self.db)
        self._vectors: tuple[Any, np.ndarray, np.ndarray] | None = None  # (version, chunk ids, matrix)
        self._writes = 0

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._writes += 1

    # ingestion

    def _spans(self, text: str) -> list[tuple[int, int]]:
        return self.embedder.spans(text) if self.embedder is not None else word_spans(text)

    def add_text(self, text: str, source: str | None = None, title: str | None = None,
                 metadata: dict[str, Any] | None = None) -> int:
        """Indexes a document; the same source with new content replaces its chunks. Returns its id."""
        return self._ingest(text, source or f"text:{_hash(text)[:16]}", title, metadata)[0]

    def _ingest(self, text: str, source: str, title: str | None, metadata: dict[str, Any] | None) -> tuple[int, str]:
        content_hash = _hash(text)
        existing = self.db.execute("SELECT id, content_hash FROM documents WHERE source = ?", [source]).fetchone()
        if existing and existing[1] == content_hash:
            return existing[0], "unchanged"
        windows = chunk_spans(self._spans(text), self.chunk_tokens, self.overlap) if text.strip() else []
        chunks = [(text[a:b], n, _hash(text[a:b])) for a, b, n in windows]
        vectors = self._missing_vectors({h: t for t, _, h in chunks})  # computed before the transaction opens
        now = _now()
        with self._transaction() as conn:
            if existing:
                conn.execute("DELETE FROM chunks WHERE document_id = ?", [existing[0]])
                conn.execute("UPDATE documents SET title = ?, content_hash = ?, metadata = ?, chunk_count = ?, updated_at = ? "
                             "WHERE id = ?", [title, content_hash, json.dumps(metadata or {}), len(chunks), now, existing[0]])
                doc_id = existing[0]
            else:
                doc_id = conn.execute(
                    "INSERT INTO documents (source, title, content_hash, metadata, chunk_count, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [source, title, content_hash, json.dumps(metadata or {}), len(chunks), now, now],
                ).lastrowid
            conn.executemany(
                "INSERT INTO chunks (document_id, position, text, token_count, content_hash) VALUES (?, ?, ?, ?, ?)",
                [(doc_id, i, t, n, h) for i, (t, n, h) in enumerate(chunks)],
            )
            if self.embedder is not None:
                conn.executemany("INSERT OR IGNORE INTO embeddings (content_hash, model, vector) VALUES (?, ?, ?)",
                                 [(h, self.embedder.name, v.astype(np.float32).tobytes()) for h, v in vectors.items()])
        return doc_id, "replaced" if existing else "added"

    def _missing_vectors(self, texts_by_hash: dict[str, str]) -> dict[str, np.ndarray]:
        """Embeddings for chunk texts not yet cached under this model (cache key: content hash)."""
        if self.embedder is None or not texts_by_hash:
            return {}
        hashes = list(texts_by_hash)
        known: set[str] = set()
        for start in range(0, len(hashes), 500):
            batch = hashes[start : start + 500]
            marks = ",".join("?" * len(batch))
            known |= {r[0] for r in self.db.execute(
                f"SELECT content_hash FROM embeddings WHERE model = ? AND content_hash IN ({marks})",
                [self.embedder.name, *batch])}
        todo = [h for h in hashes if h not in known]
        vectors = self.embedder.embed([texts_by_hash[h] for h in todo])
        return dict(zip(todo, vectors))

    def add_path(self, path: str | Path, progress: bool = False,
                 on_file: Callable[[Path, str], None] | None = None) -> IngestReport:
        """Indexes a file, or every text file under a folder (binary and huge files are skipped)."""
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or folder")
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and not (set(p.relative_to(root).parts[:-1]) & SKIPPED_DIRS)
        )
        report = IngestReport()
        bar = None
        if progress and len(files) > 1:
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task(f"indexing {root}", total=len(files))
        try:
            for file in files:
                outcome = self._add_file(file, report)
                if on_file:
                    on_file(file, outcome)
                if bar:
                    bar.advance(task)
        finally:
            if bar:
                bar.stop()
        return report

    def _add_file(self, file: Path, report: IngestReport) -> str:
        reason = None
        try:
            size = file.stat().st_size
            data = file.read_bytes() if size <= MAX_FILE_BYTES else b""
        except OSError as exc:
            reason = f"unreadable: {exc.strerror}"
        else:
            if size > MAX_FILE_BYTES:
                reason = f"larger than {MAX_FILE_BYTES // 2**20} MiB"
            elif b"\x00" in data[:8192]:
                reason = "binary file"
        if reason is None:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                reason = "not UTF-8 text"
        if reason is not None:
            report.skipped.append((str(file), reason))
            return f"skipped ({reason})"
        _, outcome = self._ingest(text, str(file.resolve()), file.name, {"path": str(file)})
        getattr(report, outcome).append(str(file))
        return outcome

    def remember(self, text: str) -> int:
        """A note from the agent; it is searchable like any document. Returns the note id."""
        doc_id = self.add_text(text, source=f"note:{_hash(text)[:16]}", title="note")
        return self.db.execute("INSERT INTO notes (text, document_id, created_at) VALUES (?, ?, ?)",
                               [text, doc_id, _now()]).lastrowid

    def remove(self, source: str) -> bool:
        with self._transaction() as conn:
            return conn.execute("DELETE FROM documents WHERE source = ?", [source]).rowcount > 0

    # search

    def search(self, query: str, k: int = 5, mode: SearchMode | None = None, source: str | None = None) -> list[Hit]:
        """Chunks relevant to `query`. mode: bm25 | vector | hybrid (reciprocal rank fusion);
        None picks hybrid, or bm25 when there is no embedder.

        `source` filters by document source, as an SQL GLOB pattern ("*.md", "note:*").
        """
        mode = mode or ("hybrid" if self.embedder is not None else "bm25")
        if mode not in ("bm25", "vector", "hybrid"):
            raise ValueError(f"search mode {mode!r} is not one of bm25, vector, hybrid")
        if mode != "bm25" and self.embedder is None:
            raise ValueError(f"search mode {mode!r} needs an embedder; this memory was opened with embedder=None")
        wide = max(k, 50) if mode == "hybrid" else k
        lists = []
        if mode in ("bm25", "hybrid"):
            lists.append(bm25_search(self.db.conn, query, wide, source))
        if mode in ("vector", "hybrid"):
            ids, matrix = self._matrix()
            lists.append(vector_search(self.db.conn, self.embedder.embed([query])[0], ids, matrix, wide, source))
        ranked = lists[0] if len(lists) == 1 else fuse(lists)
        return self._hits(ranked[:k])

    def _matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Every chunk's vector in one matrix, rebuilt only when the database changed."""
        version = (self.db.execute("PRAGMA data_version").fetchone()[0], self._writes)
        if self._vectors is None or self._vectors[0] != version:
            rows = self.db.execute(
                "SELECT c.id, e.vector FROM chunks c JOIN embeddings e ON e.content_hash = c.content_hash AND e.model = ? "
                "ORDER BY c.id", [self.embedder.name]).fetchall()
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            blob = bytearray(b"".join(r[1] for r in rows))  # writable, so torch can wrap it without a copy
            matrix = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), self.embedder.dim)
            self._vectors = (version, ids, matrix)
        return self._vectors[1], self._vectors[2]

    def _hits(self, ranked: list[tuple[int, float]]) -> list[Hit]:
        if not ranked:
            return []
        marks = ",".join("?" * len(ranked))
        rows = {r[0]: r for r in self.db.execute(
            f"SELECT c.id, c.text, d.source, d.id, d.title FROM chunks c JOIN documents d ON d.id = c.document_id "
            f"WHERE c.id IN ({marks})", [cid for cid, _ in ranked])}
        return [Hit(chunk_id=cid, score=score, text=rows[cid][1], source=rows[cid][2], document_id=rows[cid][3],
                    title=rows[cid][4]) for cid, score in ranked if cid in rows]

    def stats(self) -> dict[str, Any]:
        count = lambda table: self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
        return {
            "path": str(self.path), "documents": count("documents"), "chunks": count("chunks"),
            "embeddings": count("embeddings"), "notes": count("notes"), "runs": count("runs"), "events": count("events"),
            # the models the stored embeddings were made with (not whether this handle loaded one)
            "embedder": ", ".join(r[0] for r in self.db.execute("SELECT DISTINCT model FROM embeddings")) or None,
            "bytes": self.path.stat().st_size,
        }
