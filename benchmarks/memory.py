"""Memory speed: ingestion chunks/s, and query latency (p50, p95) at 1k, 10k and 100k chunks.

    .venv/bin/python benchmarks/memory.py [--sizes 1000 10000 100000] [--queries 50]

Ingestion is measured for real (chunking, MiniLM embeddings, SQLite writes) on 1k chunks.
For the query table, the databases are filled in bulk with synthetic text and random unit
vectors (embedding 100k chunks on two cores takes too long for a benchmark); every query is
embedded for real with MiniLM, so hybrid latency includes the query's embedding.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memory import Memory  # noqa: E402

WORDS = ("memory retrieval token model agent tool kernel cache vector search index query chunk document "
         "sqlite python torch triton decode prefill sample grammar schema plan verify trace event").split()


def synthetic_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 500)) for _ in range(words))


def ingest_rate(tmp: Path, chunks: int, embedder: str | None) -> float:
    rng = random.Random(0)
    with Memory(tmp / f"ingest-{embedder}.db", embedder=embedder, chunk_tokens=100, overlap=0) as m:
        texts = [synthetic_text(rng, 60) for _ in range(chunks)]
        if m.embedder is not None:
            m.embedder.embed(["warm up"])
        start = time.perf_counter()
        for i in range(0, chunks, 10):  # documents of about 10 chunks
            m.add_text("\n".join(texts[i : i + 10]), source=f"doc{i}")
        elapsed = time.perf_counter() - start
        return m.stats()["chunks"] / elapsed


def bulk_fill(m: Memory, chunks: int, rng: random.Random) -> None:
    vectors = np.random.default_rng(0).standard_normal((chunks, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    conn = m.db.conn
    conn.execute("BEGIN")
    for start in range(0, chunks, 100):
        doc = conn.execute("INSERT INTO documents (source, title, content_hash, metadata, chunk_count, created_at, updated_at) "
                           "VALUES (?, ?, ?, '{}', 100, '', '')", [f"doc{start}", None, str(start)]).lastrowid
        rows = []
        for i in range(start, min(start + 100, chunks)):
            text = synthetic_text(rng, 60)
            digest = hashlib.sha256(f"{i}{text}".encode()).hexdigest()
            rows.append((doc, i - start, text, 60, digest, vectors[i].tobytes()))
        conn.executemany("INSERT INTO chunks (document_id, position, text, token_count, content_hash) VALUES (?, ?, ?, ?, ?)",
                         [r[:5] for r in rows])
        conn.executemany("INSERT INTO embeddings (content_hash, model, vector) VALUES (?, 'all-MiniLM-L6-v2', ?)",
                         [(r[4], r[5]) for r in rows])
    conn.execute("COMMIT")


def latencies(m: Memory, mode: str, queries: list[str]) -> tuple[float, float]:
    m.search(queries[0], mode=mode)  # builds the cached matrix
    times = []
    for query in queries:
        start = time.perf_counter()
        m.search(query, k=5, mode=mode)
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    rng = random.Random(1)
    queries = [" ".join(f"{w}{rng.randint(0, 500)}" for w in rng.sample(WORDS, 3)) for _ in range(args.queries)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        print("ingestion (1,000 chunks of ~100 tokens, documents of ~10 chunks)")
        print(f"  BM25 only            {ingest_rate(tmp_path, 1000, None):8.0f} chunks/s")
        print(f"  with MiniLM vectors  {ingest_rate(tmp_path, 1000, 'minilm'):8.0f} chunks/s")
        print(f"\nquery latency, k=5, {args.queries} queries (ms)")
        print(f"{'chunks':>8} {'mode':>7} {'p50':>8} {'p95':>8}")
        for size in args.sizes:
            with Memory(tmp_path / f"q{size}.db") as m:
                bulk_fill(m, size, random.Random(size))
                for mode in ("bm25", "vector", "hybrid"):
                    p50, p95 = latencies(m, mode, queries)
                    print(f"{size:>8} {mode:>7} {p50:8.1f} {p95:8.1f}")


if __name__ == "__main__":
    main()
