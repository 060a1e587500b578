"""Memory: one SQLite file of documents, chunks, embeddings, notes and run traces.

Writes of a document happen in one transaction (a crash never leaves half a document);
WAL mode and a busy timeout let several processes write one file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
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
from memory.search import Hit, Match, SearchMode, bm25_search, combine, explain, query_terms, vector_search
from memory.traces import Traces

BUSY_TIMEOUT_MS = 30_000
MAX_FILE_BYTES = 5 * 1024 * 1024
EMBED_GROUP = 256  # chunks embedded together while indexing a folder
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
        similarity_floor: float | None = None,
    ) -> None:
        """similarity_floor: vector hits below this cosine are not returned; default: the embedder's
        own `similarity_floor` when it declares one (MiniLM: 0.25), else none."""
        self.path = Path(path)
        self.embedder: Embedder | None = load_embedder(embedder) if isinstance(embedder, str) else embedder
        default_floor = getattr(self.embedder, "similarity_floor", -1.0)
        self.similarity_floor = default_floor if similarity_floor is None else similarity_floor
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
        source = source or f"text:{_hash(text)[:16]}"
        if (known := self._unchanged(source, text)) is not None:
            return known
        chunks = self._chunks(text)
        return self._write(source, text, title, metadata, chunks, self._missing_vectors({h: t for t, _, h in chunks}))[0]

    def _unchanged(self, source: str, text: str) -> int | None:
        """The id of the document `source` when it already holds exactly `text` (nothing to embed or write)."""
        row = self.db.execute("SELECT id, content_hash FROM documents WHERE source = ?", [source]).fetchone()
        return row[0] if row and row[1] == _hash(text) else None

    def _chunks(self, text: str) -> list[tuple[str, int, str]]:
        """(text, tokens, content hash) of each chunk."""
        windows = chunk_spans(self._spans(text), self.chunk_tokens, self.overlap) if text.strip() else []
        return [(text[a:b], n, _hash(text[a:b])) for a, b, n in windows]

    def _write(self, source: str, text: str, title: str | None, metadata: dict[str, Any] | None,
               chunks: list[tuple[str, int, str]], vectors: dict[str, np.ndarray]) -> tuple[int, str]:
        """One document, its chunks and their new vectors, in one transaction (vectors computed before it opens)."""
        content_hash = _hash(text)
        existing = self.db.execute("SELECT id, content_hash FROM documents WHERE source = ?", [source]).fetchone()
        if existing and existing[1] == content_hash:
            return existing[0], "unchanged"
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
                                 [(h, self.embedder.name, vectors[h].astype(np.float32).tobytes())
                                  for _, _, h in chunks if h in vectors])
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
        """Indexes a file, or every text file under a folder (binary and huge files are skipped).

        Files are embedded in groups of about EMBED_GROUP chunks (fewer, fuller batches than one
        call per file) and each is then written in its own transaction."""
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or folder")
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and not (set(p.relative_to(root).parts[:-1]) & SKIPPED_DIRS)
        )
        report, bar, done, start = IngestReport(), None, 0, time.perf_counter()
        if progress and len(files) > 1:
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task(f"indexing {root}", total=len(files))
        try:
            group: list[tuple[Path, str, list[tuple[str, int, str]]]] = []
            for i, file in enumerate(files):
                text = self._read(file, report)
                if text is None or self._unchanged(str(file.resolve()), text) is not None:
                    if text is not None:
                        report.unchanged.append(str(file))
                    if on_file:
                        on_file(file, "unchanged" if text is not None else f"skipped ({report.skipped[-1][1]})")
                else:
                    group.append((file, text, self._chunks(text)))
                if group and (i == len(files) - 1 or sum(len(c) for _, _, c in group) >= EMBED_GROUP):
                    done += self._add_group(group, report, on_file)
                    group = []
                if bar:
                    rate = done / max(time.perf_counter() - start, 1e-9)
                    bar.update(task, advance=1, description=f"indexing {root}: {done} chunks, {rate:.0f} chunks/s")
        finally:
            if bar:
                bar.stop()
        return report

    def _add_group(self, group: list[tuple[Path, str, list[tuple[str, int, str]]]], report: IngestReport,
                   on_file: Callable[[Path, str], None] | None) -> int:
        vectors = self._missing_vectors({h: t for _, _, chunks in group for t, _, h in chunks})
        for file, text, chunks in group:
            _, outcome = self._write(str(file.resolve()), text, file.name, {"path": str(file)}, chunks, vectors)
            getattr(report, outcome).append(str(file))
            if on_file:
                on_file(file, outcome)
        return sum(len(chunks) for _, _, chunks in group)

    def _read(self, file: Path, report: IngestReport) -> str | None:
        """The file's text, or None (and the reason in the report) when it is not indexable."""
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
                return data.decode("utf-8")
            except UnicodeDecodeError:
                reason = "not UTF-8 text"
        report.skipped.append((str(file), reason))
        return None

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
        """Chunks relevant to `query`, each with why it was found (`Hit.why`). mode: bm25 | vector |
        hybrid (see memory/search.py for how it combines them); None picks hybrid, or bm25 when there
        is no embedder. A query of stopwords only finds nothing by BM25.

        `source` filters by document source, as an SQL GLOB pattern ("*.md", "note:*").
        """
        mode = mode or ("hybrid" if self.embedder is not None else "bm25")
        if mode not in ("bm25", "vector", "hybrid"):
            raise ValueError(f"search mode {mode!r} is not one of bm25, vector, hybrid")
        if mode != "bm25" and self.embedder is None:
            raise ValueError(f"search mode {mode!r} needs an embedder; this memory was opened with embedder=None")
        wide, terms = max(k, 50), query_terms(query)
        every, some, vector = [], [], []
        if mode in ("bm25", "hybrid"):
            every = bm25_search(self.db.conn, terms, wide, source, every=True)
            some = bm25_search(self.db.conn, terms, wide, source) if every or mode == "bm25" else []
        if mode in ("vector", "hybrid"):
            ids, matrix = self._matrix()
            vector = vector_search(self.db.conn, self.embedder.embed([query])[0], ids, matrix, wide, source,
                                   floor=self.similarity_floor)
        return self._hits(combine(mode, every, some, vector)[:k], explain(every, some, vector))

    def _matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Every chunk's vector in one matrix, rebuilt only when the database changed."""
        version = (self.db.execute("PRAGMA data_version").fetchone()[0], self._writes)
        if self._vectors is None or self._vectors[0] != version:
            name, width = self.embedder.name, 4 * self.embedder.dim
            rows = self.db.execute(
                "SELECT c.id, e.vector FROM chunks c JOIN embeddings e ON e.content_hash = c.content_hash AND e.model = ? "
                "ORDER BY c.id", [name]).fetchall()
            if not rows and (others := self._other_embedders()):
                raise MemoryStoreError(
                    f"{self.path} holds vectors from {', '.join(others)}, not from {name}, the embedder it was opened with; "
                    f"open it with embedder={others[0]!r}, or re-embed it: tokentrail memory reembed --memory {self.path}")
            if any(len(r[1]) != width for r in rows):
                size = next(len(r[1]) for r in rows if len(r[1]) != width)
                raise MemoryStoreError(
                    f"{self.path} holds {name} vectors of {size} bytes where {name} writes {width} (another version wrote "
                    f"them); re-embed them: tokentrail memory reembed --memory {self.path}")
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            blob = bytearray(b"".join(r[1] for r in rows))  # writable, so torch can wrap it without a copy
            matrix = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), self.embedder.dim)
            self._vectors = (version, ids, matrix)
        return self._vectors[1], self._vectors[2]

    def _other_embedders(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT model FROM embeddings WHERE model != ?", [self.embedder.name])]

    def reembed(self) -> int:
        """Embeds every chunk that lacks a vector from this memory's embedder (after a change of
        embedder, vectors of another version, or chunks indexed without embeddings); returns how many."""
        if self.embedder is None:
            raise MemoryStoreError("re-embedding needs an embedder; this memory was opened with embedder=None")
        with self._transaction() as conn:  # vectors of the wrong size are another version's: replace them
            conn.execute("DELETE FROM embeddings WHERE model = ? AND length(vector) != ?",
                         [self.embedder.name, 4 * self.embedder.dim])
        todo = self.db.execute(
            "SELECT DISTINCT c.content_hash, c.text FROM chunks c LEFT JOIN embeddings e ON e.content_hash = c.content_hash "
            "AND e.model = ? WHERE e.content_hash IS NULL", [self.embedder.name]).fetchall()
        for start in range(0, len(todo), EMBED_GROUP):
            batch = dict(todo[start : start + EMBED_GROUP])
            vectors = self.embedder.embed(list(batch.values()))
            with self._transaction() as conn:
                conn.executemany("INSERT OR IGNORE INTO embeddings (content_hash, model, vector) VALUES (?, ?, ?)",
                                 [(h, self.embedder.name, v.astype(np.float32).tobytes()) for h, v in zip(batch, vectors)])
        return len(todo)

    def _hits(self, ranked: list[tuple[int, float]], why: dict[int, Match]) -> list[Hit]:
        if not ranked:
            return []
        marks = ",".join("?" * len(ranked))
        rows = {r[0]: r for r in self.db.execute(
            f"SELECT c.id, c.text, d.source, d.id, d.title FROM chunks c JOIN documents d ON d.id = c.document_id "
            f"WHERE c.id IN ({marks})", [cid for cid, _ in ranked])}
        return [Hit(chunk_id=cid, score=score, text=rows[cid][1], source=rows[cid][2], document_id=rows[cid][3],
                    title=rows[cid][4], why=why.get(cid, Match())) for cid, score in ranked if cid in rows]

    def stats(self) -> dict[str, Any]:
        count = lambda table: self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
        return {
            "path": str(self.path), "documents": count("documents"), "chunks": count("chunks"),
            "embeddings": count("embeddings"), "notes": count("notes"), "runs": count("runs"), "events": count("events"),
            # the models the stored embeddings were made with (not whether this handle loaded one)
            "embedder": ", ".join(r[0] for r in self.db.execute("SELECT DISTINCT model FROM embeddings")) or None,
            "bytes": self.path.stat().st_size,
        }
