"""Retrieval quality: bm25, vector and hybrid search side by side on a corpus every CPython ships.

    .venv/bin/python benchmarks/retrieval.py [--split report|tune|all] [--db PATH] [--show-misses]

Corpus: the docstrings of about 450 public functions and classes of the standard library, about 50
module docstrings and the 79 language-reference topics of pydoc (575 documents on Python 3.11, read from
this interpreter; nothing is downloaded). Queries: benchmarks/data/retrieval_queries.jsonl, 155
written as users ask: paraphrases that avoid the documents' words, keyword lookups (identifiers,
option names, RFC numbers) and questions the corpus cannot answer. Even-numbered queries are the
tuning half, odd-numbered ones the report half: choose on one, report on the other.

Per mode and slice: recall@1 and recall@5 (a relevant document first / in the first five),
nDCG@10, and for unanswerable queries the share that returned nothing; then query latency.
A hit is a chunk; documents are ranked by their best chunk.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memory import Memory  # noqa: E402

QUERIES = ROOT / "benchmarks" / "data" / "retrieval_queries.jsonl"
MODULES = """os os.path shutil json re itertools functools collections subprocess pathlib textwrap heapq bisect random
statistics string tempfile csv hashlib base64 glob fnmatch difflib pprint copy time sqlite3 urllib.parse zipfile tarfile
logging argparse threading queue socket uuid secrets shlex inspect typing dataclasses enum contextlib warnings traceback
unittest gzip calendar datetime math operator struct pickle io codecs locale gettext email.utils html http.client
urllib.request xml.etree.ElementTree sched timeit doctest pdb ast tokenize zlib lzma bz2 configparser fileinput getpass
platform signal select selectors mmap ipaddress decimal fractions array weakref abc numbers types graphlib
concurrent.futures asyncio multiprocessing""".split()
MODES = ("bm25", "vector", "hybrid")


def corpus() -> dict[str, str]:
    """Document id ("py:json.dumps", "module:heapq", "topic:lambda") -> text."""
    from pydoc_data.topics import topics

    docs: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            doc = inspect.getdoc(module) or ""
            if len(doc) >= 300:
                docs[f"module:{name}"] = doc
            for attr, obj in sorted(vars(module).items()):
                if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                    continue
                if getattr(obj, "__module__", None) not in (name, module.__name__):
                    continue  # imported from elsewhere: documented there
                doc = inspect.getdoc(obj) or ""
                if len(doc) >= 200:
                    docs[f"py:{name}.{attr}"] = f"{name}.{attr}\n\n{doc}"
    for name, text in sorted(topics.items()):
        docs[f"topic:{name}"] = text
    return docs


def queries(split: str) -> list[dict]:
    rows = [json.loads(line) for line in QUERIES.read_text().splitlines() if line.strip()]
    if split == "all":
        return rows
    return [row for i, row in enumerate(rows) if i % 2 == (0 if split == "tune" else 1)]


def ranked_documents(memory: Memory, query: str, mode: str, k: int = 10) -> list[str]:
    seen: list[str] = []
    for hit in memory.search(query, k=4 * k, mode=mode):
        if hit.source not in seen:
            seen.append(hit.source)
    return seen[:k]


def ndcg(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    gain = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if doc in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return gain / ideal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=["report", "tune", "all"], default="report")
    parser.add_argument("--db", type=Path, help="a memory to reuse between runs (built on first use)")
    parser.add_argument("--show-misses", action="store_true", help="print the queries each mode gets wrong")
    args = parser.parse_args()
    docs = corpus()
    path = args.db or Path(tempfile.mkdtemp()) / "retrieval.db"
    with Memory(path) as memory:
        if memory.stats()["documents"] != len(docs):
            start = time.perf_counter()
            for doc_id, text in docs.items():
                memory.add_text(text, source=doc_id)
            print(f"ingested {len(docs)} documents, {memory.stats()['chunks']} chunks in {time.perf_counter() - start:.0f} s")
        rows = [{**row, "relevant": [doc for doc in row["relevant"] if doc in docs]} for row in queries(args.split)]
        rows = [row for row in rows if row["relevant"] or row["kind"] == "none"]  # a target this Python lacks
        print(f"{len(docs)} documents; {len(rows)} queries ({args.split} split) on Python {sys.version.split()[0]}\n")
        print(f"{'mode':8} {'slice':11} {'n':>3} {'recall@1':>9} {'recall@5':>9} {'nDCG@10':>8} {'empty':>6}")
        latency: dict[str, list[float]] = {}
        for mode in MODES:
            results = []
            for row in rows:
                start = time.perf_counter()
                ranked = ranked_documents(memory, row["query"], mode)
                latency.setdefault(mode, []).append(time.perf_counter() - start)
                results.append((row, ranked))
            for kind in ("paraphrase", "keyword", "answerable", "none"):
                chosen = [(row, ranked) for row, ranked in results
                          if row["kind"] == kind or (kind == "answerable" and row["kind"] != "none")]
                if not chosen:
                    continue
                empty = sum(not ranked for _, ranked in chosen) / len(chosen)
                if kind == "none":
                    print(f"{mode:8} {kind:11} {len(chosen):3} {'':>9} {'':>9} {'':>8} {empty:6.0%}")
                    continue
                r1 = statistics.mean(bool(ranked) and ranked[0] in set(row["relevant"]) for row, ranked in chosen)
                r5 = statistics.mean(bool(set(ranked[:5]) & set(row["relevant"])) for row, ranked in chosen)
                n10 = statistics.mean(ndcg(ranked, set(row["relevant"])) for row, ranked in chosen)
                print(f"{mode:8} {kind:11} {len(chosen):3} {r1:9.1%} {r5:9.1%} {n10:8.3f} {empty:6.0%}")
            if args.show_misses:
                for row, ranked in results:
                    if row["kind"] != "none" and (not ranked or ranked[0] not in row["relevant"]):
                        print(f"    miss [{mode}] {row['query']!r}: got {ranked[:3]}, want {row['relevant'][:2]}")
        print("\nquery latency, ms (query embedding included)")
        for mode, seconds in latency.items():
            ms = sorted(s * 1000 for s in seconds)
            print(f"{mode:8} p50 {statistics.median(ms):6.1f}  p95 {ms[int(0.95 * (len(ms) - 1))]:6.1f}")


if __name__ == "__main__":
    main()
