"""Attention dilution: one fact in contexts of growing length; is it still found, and how much attention
does the token that answers put on it?

    .venv/bin/python benchmarks/attention_dilution.py [--pulled smollm2 qwen2.5-coder-0.5b] [--model PATH ...]
                                                      [--lengths 0 256 512 1024 2048] [--facts 8]

The distractor is the documentation of Python's own standard library (module docstrings read from this
interpreter), cut to each length in the model's tokens; the fact ("The code of the red locker is
4817.") sits in its middle. Each model answers greedily; a reply with the code is right. The
attention on the fact is the share of the weights (heads averaged; layers averaged, and in the layer
that puts most there) that the reply's first token with a digit (else its first token) puts on the
fact's tokens: the reply is branched at that token (continue_from) with SamplingParams(attention=K),
K the whole context. "Even spread" is the fact's share of the context. Prints a table naming the
CPU and writes an SVG plot.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends import GenerationRequest, Message, SamplingParams, load_backend  # noqa: E402
from benchmarks.machine import cpu_line  # noqa: E402

MODULES = ("collections", "json", "argparse", "logging", "pathlib", "subprocess", "threading", "unittest",
           "asyncio", "decimal", "statistics", "itertools", "functools", "dataclasses", "typing", "sqlite3")
COLOURS = ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "grey", "brown")
OUT = ROOT / "benchmarks" / "results"


def distractor() -> str:
    docs = [inspect.getdoc(importlib.import_module(name)) or "" for name in MODULES]
    return "\n\n".join(d for d in docs if d)


def cut(tokenizer, text: str, tokens: int) -> tuple[str, str]:
    """The first `tokens` tokens of `text`, as two halves (the fact goes between them)."""
    ids = tokenizer.encode(text)[:tokens]
    if len(ids) < tokens:
        raise SystemExit(f"the distractor has only {len(ids)} tokens; ask for lengths up to that")
    half = tokens // 2
    return tokenizer.decode(ids[:half]), tokenizer.decode(ids[half:])


def fact_span(prompt_tokens: list[str], fact: str) -> range:
    """The positions of the tokens that spell `fact` in the prompt."""
    text, starts, at = "", [], 0
    for token in prompt_tokens:
        starts.append(at)
        at += len(token)
        text += token
    begin = text.index(fact)
    end = begin + len(fact)
    return range(max(i for i, s in enumerate(starts) if s <= begin), max(i for i, s in enumerate(starts) if s < end) + 1)


def measure(backend, lengths: list[int], facts: int) -> list[dict]:
    text, rows, rng = distractor(), [], random.Random(0)
    cases = [(COLOURS[i % len(COLOURS)], rng.randrange(1000, 9999)) for i in range(facts)]
    for length in lengths:
        before, after = cut(backend.tokenizer, text, length) if length else ("", "")
        right, masses, best, uniform, context, started = 0, [], [], [], 0, time.perf_counter()
        for colour, code in cases:
            fact = f"The code of the {colour} locker is {code}."
            notes = f"{before} {fact} {after}".strip()
            question = f"Read these notes.\n\n{notes}\n\nWhat is the code of the {colour} locker? Answer with the number only."
            messages = [Message(role="user", content=question)]
            reply = backend.generate(GenerationRequest(messages=messages, sampling=SamplingParams(temperature=0, max_tokens=16)))
            right += str(code) in reply.text
            # where the token that says the code looked (the first token when none has a digit): the reply is
            # continued from the tokens before it, asking for the attention of that one token only
            said = next((i for i, e in enumerate(reply.events) if any(c.isdigit() for c in e.text)), 0)
            watched = SamplingParams(temperature=0, max_tokens=said + 1, attention=4096)
            events = list(backend.continue_from(GenerationRequest(messages=messages, sampling=watched),
                                                reply.token_ids[:said]))
            span = fact_span(events[0].prompt_tokens, fact)
            looked = events[0].attention
            masses.append(sum(x.weight for x in looked.mean if x.position in span))
            best.append(max(sum(x.weight for x in layer if x.position in span) for layer in looked.layers))
            context = reply.usage.prompt_tokens
            uniform.append(len(span) / len(events[0].prompt_tokens))
        rows.append({"length": length, "context": context, "accuracy": right / facts,
                     "mass": sum(masses) / facts, "best_layer": sum(best) / facts, "uniform": sum(uniform) / facts,
                     "seconds": (time.perf_counter() - started) / facts})
    return rows


def svg(results: dict[str, list[dict]], path: Path, title: str) -> None:
    """Two panels, accuracy and attention mass on the fact, against context tokens (log scale)."""
    width, height, pad, gap = 860, 340, 56, 60
    panel = (width - 2 * pad - gap) / 2
    colours = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    contexts = [r["context"] for rows in results.values() for r in rows]
    low, high = min(contexts), max(contexts)

    def x(value: float, left: float) -> float:
        return left + (math.log2(value) - math.log2(low)) / max(math.log2(high) - math.log2(low), 1e-9) * panel

    def y(value: float, top: float) -> float:
        return height - pad - value / top * (height - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    top_mass = max(max(r["best_layer"] for rows in results.values() for r in rows) * 1.15, 0.01)
    for p, (key, label, top) in enumerate((("accuracy", "accuracy", 1.0), ("mass", "attention on the fact", top_mass))):
        left = pad + p * (panel + gap)
        parts.append(f'<line x1="{left}" y1="{height - pad}" x2="{left + panel}" y2="{height - pad}" stroke="black"/>')
        parts.append(f'<line x1="{left}" y1="{pad}" x2="{left}" y2="{height - pad}" stroke="black"/>')
        parts.append(f'<text x="{left + panel / 2}" y="{pad - 12}" text-anchor="middle">{label}</text>')
        parts.append(f'<text x="{left + panel / 2}" y="{height - 14}" text-anchor="middle">context tokens</text>')
        for tick in (0, 0.5, 1.0):
            parts.append(f'<text x="{left - 6}" y="{y(tick * top, top) + 4}" text-anchor="end">{tick * top:.0%}</text>')
        for context in (2**i for i in range(math.ceil(math.log2(low)), math.floor(math.log2(high)) + 1)):
            parts.append(f'<text x="{x(context, left)}" y="{height - pad + 16}" text-anchor="middle">{context}</text>')
        for (name, rows), colour in zip(results.items(), colours):
            points = " ".join(f"{x(r['context'], left):.1f},{y(r[key], top):.1f}" for r in rows)
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
            if key == "mass":
                for other, dashes in (("uniform", "4 3"), ("best_layer", "1 3")):
                    line = " ".join(f"{x(r['context'], left):.1f},{y(r[other], top):.1f}" for r in rows)
                    parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-dasharray="{dashes}"/>')
    for i, (name, colour) in enumerate(zip(results, colours)):
        parts.append(f'<text x="{pad + 8}" y="{pad + 16 + 16 * i}" fill="{colour}">{name}</text>')
    parts.append(f'<text x="{width - pad}" y="{pad + 16}" text-anchor="end" fill="#555">solid: layers averaged; '
                 f'dotted: the best layer</text>')
    parts.append(f'<text x="{width - pad}" y="{pad + 32}" text-anchor="end" fill="#555">dashed: an even spread</text>')
    path.write_text("\n".join(parts) + "</svg>\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pulled", nargs="*", default=["smollm2", "qwen2.5-coder-0.5b"])
    parser.add_argument("--model", nargs="*", default=[], help="GGUF files or model folders")
    parser.add_argument("--lengths", nargs="*", type=int, default=[0, 256, 512, 1024, 2048])
    parser.add_argument("--facts", type=int, default=8)
    parser.add_argument("--out", type=Path, default=OUT / "attention_dilution.svg")
    args = parser.parse_args()
    machine = cpu_line()
    results = {}
    for name in [*args.pulled, *args.model]:
        backend = load_backend("local", model=name, auto_pull=False)
        results[Path(name).name] = measure(backend, args.lengths, args.facts)
    table = [f"Attention dilution, {args.facts} facts a length, greedy, fast precision; {machine}", "",
             "| model | distractor tokens | context tokens | found | attention on the fact | in its best layer | "
             "even spread | s/question |", "|---|---|---|---|---|---|---|---|"]
    table += [f"| {name} | {r['length']} | {r['context']} | {r['accuracy']:.0%} | {r['mass']:.1%} | "
              f"{r['best_layer']:.1%} | {r['uniform']:.1%} | {r['seconds']:.2f} |"
              for name, rows in results.items() for r in rows]
    print("\n".join(table))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    svg(results, args.out, "One fact in a growing context: found, and attention on it")
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print(f"\nplot: {args.out}, table: {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
