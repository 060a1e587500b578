"""Domain tuning on a real corpus: the interpreter's own documentation, next-token loss, held-out perplexity.

    .venv/bin/python benchmarks/train_text.py [--model smollm2] [--modules 12] [--epochs 1] [--block 512]

Writes the plain-text documentation (pydoc) of standard-library modules to a temporary folder, trains a
LoRA adapter on it with `train.text.train_text` (float32, the exact engine) and prints the held-out
perplexity before and after, the tokens, the time and the CPU.
"""

from __future__ import annotations

import argparse
import importlib
import pydoc
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends import load_backend  # noqa: E402
from benchmarks.machine import cpu_line  # noqa: E402
from train.text import TextConfig, train_text  # noqa: E402

MODULES = ("json", "pathlib", "collections", "functools", "itertools", "statistics", "textwrap", "string", "shlex",
           "csv", "heapq", "bisect", "fractions", "decimal", "dataclasses", "enum", "contextlib", "argparse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--modules", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--lr", type=float, default=2e-4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "docs"
        corpus.mkdir()
        for name in MODULES[: args.modules]:
            text = pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext)
            (corpus / f"{name}.txt").write_text(text, encoding="utf-8")
        backend = load_backend("local", model=args.model, precision="exact", auto_pull=False)
        started = time.perf_counter()
        result = train_text(backend, [corpus], Path(tmp) / "adapter",
                            TextConfig(epochs=args.epochs, block=args.block, lr=args.lr))
        seconds = time.perf_counter() - started
    print(f"train text, {args.model}, LoRA rank 8, lr {args.lr}, {args.epochs} epoch(s), blocks of {args.block}; "
          f"{cpu_line()}\n")
    print("| corpus | tokens | blocks trained / held out | held-out perplexity before | after | steps | time |")
    print("|---|---|---|---|---|---|---|")
    print(f"| pydoc of {result.files} stdlib modules | {result.tokens} | {result.trained_examples} / "
          f"{result.held_out_examples} | {result.held_out_perplexity_before:.3f} | {result.held_out_perplexity_after:.3f} "
          f"| {len(result.steps)} | {seconds:.0f} s |")


if __name__ == "__main__":
    main()
