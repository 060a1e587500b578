"""Retrieval: BM25 through FTS5, cosine over a cached matrix, and how hybrid search combines them.

Hybrid search, chosen by measurement (benchmarks/retrieval.py: 575 standard-library documents,
MiniLM; chosen on the tuning half of the queries, these numbers from the report half, 35
paraphrases and 30 keyword lookups):

    ranking                                    paraphrase r@1 nDCG@10   keyword r@1 nDCG@10   all r@1 nDCG@10
    bm25, before (OR of every word)                0.23   0.257             0.97   0.977         0.57   0.589
    bm25, now (no stopwords, all words first)      0.20   0.249             0.97   0.977         0.55   0.585
    vector, before                                 0.29   0.500             0.87   0.920         0.55   0.694
    vector, now (similarity floor 0.25)            0.29   0.480             0.87   0.919         0.55   0.682
    hybrid, before: RRF, equal weights             0.26   0.412             0.93   0.967         0.57   0.668
    hybrid, now                                    0.29   0.480             0.97   0.980         0.60   0.711

Plain reciprocal rank fusion let BM25's matches on common words outvote a confident vector
match; stopword removal, weighted RRF and convex combinations of normalized scores (tried on
the tuning half) each traded one slice for the other. What tells the two kinds of query apart
is whether one chunk holds every content word of the query: a paraphrase almost never (1 of
35 tuning queries), a keyword lookup almost always (29 of 30). So when some chunks hold them all,
the rankings are fused by RRF and those chunks come first; when none does, the vector ranking
alone. Vector hits below the embedder's similarity floor are dropped: a question the
memory cannot answer gets fewer hits, not the nearest noise.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel

SearchMode = Literal["bm25", "vector", "hybrid"]
RRF_K = 60  # the constant from Cormack et al.; dampens the weight of the very top ranks
MAX_TERMS = 32  # a pasted page as a query: its first distinct content words
EVERY_WORD = 1.0  # added to the hybrid score of a chunk that holds every content word

_TERM = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset("""a about an and any are as at be been but by can could did do does doing for from had has have
how i if in into is it its just me my no not of on or our over so some such than that the their them then there these they
this those to too under up us very was we were what when where which while who whom why will with would you your""".split())

Ranked = list[tuple[int, float]]  # (chunk id, score), best first


class Match(BaseModel):
    """Why a chunk was found: its place and score in each ranking that holds it."""

    every_word: bool = False  # the chunk holds every content word of the query
    bm25: float | None = None
    bm25_rank: int | None = None
    similarity: float | None = None  # cosine between the query's and the chunk's embeddings
    vector_rank: int | None = None


    def describe(self) -> str:
        """One line for a person: "every word; bm25 12.31 (#1); cosine 0.52 (#3)"."""
        parts = ["every word"] if self.every_word else []
        if self.bm25 is not None:
            parts.append(f"bm25 {self.bm25:.2f} (#{self.bm25_rank})")
        if self.similarity is not None:
            parts.append(f"cosine {self.similarity:.2f} (#{self.vector_rank})")
        return "; ".join(parts) or "no ranking holds it"


class Hit(BaseModel):
    chunk_id: int
    score: float  # bm25: BM25; vector: cosine; hybrid: RRF of the rankings, plus 1 when the chunk holds every query word
    text: str
    source: str
    document_id: int
    title: str | None = None
    why: Match = Match()


def query_terms(text: str) -> list[str]:
    """The words of a query that can match: no stopwords, no repeats, at most MAX_TERMS."""
    terms = [t for t in _TERM.findall(text.lower()) if t not in STOPWORDS]
    return list(dict.fromkeys(terms))[:MAX_TERMS]


def bm25_search(conn: sqlite3.Connection, terms: list[str], k: int, source: str | None, every: bool = False) -> Ranked:
    """Chunks holding any (or, with `every`, all) of `terms`, by BM25. Terms are quoted: no operator injection."""
    if not terms:
        return []
    match = (" AND " if every else " OR ").join(f'"{term}"' for term in terms)
    sql = ("SELECT c.id, -bm25(chunks_fts) AS score FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
           "JOIN documents d ON d.id = c.document_id WHERE chunks_fts MATCH ?")
    params: list[object] = [match]
    if source:
        sql += " AND d.source GLOB ?"
        params.append(source)
    sql += " ORDER BY bm25(chunks_fts) LIMIT ?"
    return [(row[0], float(row[1])) for row in conn.execute(sql, [*params, k])]


def vector_search(conn: sqlite3.Connection, query: np.ndarray, ids: np.ndarray, matrix: np.ndarray, k: int,
                  source: str | None, floor: float = -1.0) -> Ranked:
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
    return [(int(ids[i]), float(scores[i])) for i in best if np.isfinite(scores[i]) and scores[i] >= floor]


def fuse(ranked_lists: list[Ranked]) -> Ranked:
    """Reciprocal rank fusion: each list adds 1 / (RRF_K + rank) to the items it holds."""
    scores: dict[int, float] = {}
    for ranked in ranked_lists:
        for rank, (item, _) in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)


def combine(mode: SearchMode, every: Ranked, some: Ranked, vector: Ranked) -> Ranked:
    """One ranking from the chunks holding every query word, those holding some, and the vector ranking."""
    if mode == "bm25":
        held = {item for item, _ in every}
        return every + [(item, score) for item, score in some if item not in held]
    if mode == "vector" or not every:
        return vector
    held = {item for item, _ in every}
    scores = [(item, score + (EVERY_WORD if item in held else 0.0)) for item, score in fuse([every, some, vector])]
    return sorted(scores, key=lambda kv: kv[1], reverse=True)


def explain(every: Ranked, some: Ranked, vector: Ranked) -> dict[int, Match]:
    matches: dict[int, Match] = {}
    for rank, (item, score) in enumerate(some, start=1):
        matches[item] = Match(bm25=score, bm25_rank=rank)
    for item, _ in every:
        matches.setdefault(item, Match()).every_word = True
    for rank, (item, score) in enumerate(vector, start=1):
        match = matches.setdefault(item, Match())
        match.similarity, match.vector_rank = score, rank
    return matches
