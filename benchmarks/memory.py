"""Memory speed: embedding and ingestion chunks/s beside sentence-transformers, and query latency.

    .venv/bin/python benchmarks/memory.py [--sizes 1000 10000 100000] [--queries 50] [--chunks 512]

Embedding: the same chunks of real text (the standard library's docstrings, as in
benchmarks/retrieval.py, about 200 tokens each), the same threads: our MiniLM encoder in bfloat16
(the default on a CPU with native bfloat16) and in float32, beside sentence-transformers' `encode`
(pip install sentence-transformers: a benchmark-only peer; its row appears when it is installed).
Ingestion is measured for real (chunking, MiniLM embeddings, SQLite writes) on 1k chunks, and for
a folder of files through `add_path`.
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parent))

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


def real_chunks(count: int) -> list[str]:
    from retrieval import corpus

    with tempfile.TemporaryDirectory() as tmp, Memory(Path(tmp) / "chunks.db", embedder=None) as m:
        m.chunk_tokens, m.overlap = 200, 0
        for source, text in list(corpus().items())[: count]:
            m.add_text(text, source=source)
        return [r[0] for r in m.db.execute("SELECT text FROM chunks ORDER BY id LIMIT ?", [count])]


def embedding_rates(texts: list[str]) -> list[tuple[str, float]]:
    import importlib.util

    from backends.embedders import MiniLMEmbedder
    from backends.local.model_cache import pull

    def rate(embed: Callable[[list[str]], object]) -> float:
        embed(texts[:8])  # warm up
        start = time.perf_counter()
        embed(texts)
        return len(texts) / (time.perf_counter() - start)

    rows = [(f"ours, {name}", rate(MiniLMEmbedder(bfloat16=name == "bfloat16").embed)) for name in ("bfloat16", "float32")]
    if importlib.util.find_spec("sentence_transformers"):
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(pull("minilm")), device="cpu")
        rows.append(("sentence-transformers encode", rate(lambda t: model.encode(t, batch_size=32))))
    return rows


def folder_rate(tmp: Path, texts: list[str]) -> float:
    folder = tmp / "folder"
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"doc{i}.md").write_text(text)
    with Memory(tmp / "folder.db") as m:
        m.embedder.embed(["warm up"])
        start = time.perf_counter()
        m.add_path(folder)
        return m.stats()["chunks"] / (time.perf_counter() - start)


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
    parser.add_argument("--chunks", type=int, default=512, help="real chunks for the embedding table")
    args = parser.parse_args()
    texts = real_chunks(args.chunks)
    print(f"embedding {len(texts)} chunks of real text, {torch.get_num_threads()} threads")
    for name, per_second in embedding_rates(texts):
        print(f"  {name:30} {per_second:8.1f} chunks/s")
    rng = random.Random(1)
    queries = [" ".join(f"{w}{rng.randint(0, 500)}" for w in rng.sample(WORDS, 3)) for _ in range(args.queries)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        print("ingestion (1,000 chunks of ~100 tokens, documents of ~10 chunks)")
        print(f"  BM25 only            {ingest_rate(tmp_path, 1000, None):8.0f} chunks/s")
        print(f"  with MiniLM vectors  {ingest_rate(tmp_path, 1000, 'minilm'):8.0f} chunks/s")
        print(f"  a folder of {len(texts)} files, add_path  {folder_rate(tmp_path, texts):8.0f} chunks/s")
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
