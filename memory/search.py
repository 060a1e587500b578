"""Retrieval: BM25 through FTS5, cosine over a cached matrix, and reciprocal rank fusion."""

from __future__ import annotations

import re
import sqlite3
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel

SearchMode = Literal["bm25", "vector", "hybrid"]
RRF_K = 60  # the constant from Cormack et al.; dampens the weight of the very top ranks

_TERM = re.compile(r"\w+", re.UNICODE)


class Hit(BaseModel):
    chunk_id: int
    score: float
    text: str
    source: str
    document_id: int
    title: str | None = None


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: each term quoted (no operator injection), any may match."""
    return " OR ".join(f'"{term}"' for term in _TERM.findall(text))


def bm25_search(conn: sqlite3.Connection, query: str, k: int, source: str | None) -> list[tuple[int, float]]:
    match = fts_query(query)
    if not match:
        return []
    sql = ("SELECT c.id, -bm25(chunks_fts) AS score FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
           "JOIN documents d ON d.id = c.document_id WHERE chunks_fts MATCH ?")
    params: list[object] = [match]
    if source:
        sql += " AND d.source GLOB ?"
        params.append(source)
    sql += " ORDER BY bm25(chunks_fts) LIMIT ?"
    return [(row[0], float(row[1])) for row in conn.execute(sql, [*params, k])]


def vector_search(conn: sqlite3.Connection, query: np.ndarray, ids: np.ndarray, matrix: np.ndarray, k: int,
                  source: str | None) -> list[tuple[int, float]]:
    if len(ids) == 0:
        return []
    # torch, not numpy: the query was just embedded by torch, and handing the cores over to
    # OpenBLAS's thread pool right after costs more than the product itself.
    scores = torch.from_numpy(matrix).mv(torch.from_numpy(query.astype(np.float32))).numpy()
    if source:
        allowed = {r[0] for r in conn.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.source GLOB ?", [source])}
        scores = np.where(np.isin(ids, list(allowed)), scores, -np.inf)
    top = min(k, len(ids))
    best = np.argpartition(-scores, top - 1)[:top]
    best = best[np.argsort(-scores[best])]
    return [(int(ids[i]), float(scores[i])) for i in best if np.isfinite(scores[i])]


def fuse(ranked_lists: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each list adds 1 / (RRF_K + rank) to the items it holds."""
    scores: dict[int, float] = {}
    for ranked in ranked_lists:
        for rank, (item, _) in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
