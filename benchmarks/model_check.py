"""Does our engine compute what transformers computes, on a real model file? Perplexity and greedy text.

    .venv/bin/python benchmarks/model_check.py [MODEL ...]   (default: gemma3-270m)
    (transformers is the reference: .venv/bin/pip install -e ".[goldens]")

For each model (a pulled name or a GGUF path): whether the tokenizers agree on texts in
several scripts, perplexity on a held-out text (the interpreter's
own documentation of `json` and `functools`, so every machine has the same text), the share of
positions whose top-1 token agrees with transformers, the largest logit difference, and greedy
continuations of a few prompts, token for token, for our exact (float32) and fast (quantized)
modes beside transformers reading the same GGUF with the same `gguf` package.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.local.loader import load_model  # noqa: E402
from backends.local.model_cache import KNOWN_MODELS, resolve  # noqa: E402

TOKENIZER_TEXTS = ["Hello, world!", "  leading spaces\tand\ttabs\n\n\nnewlines", "naïve café, Straße, Ελληνικά, русский",
                   "日本語のテキスト, 한국어, हिन्दी", "emoji 😀👍🏽🇫🇷", "def f(x):\n    return x ** 2  # square",
                   "<start_of_turn>user\nHi<end_of_turn>", "1234567890 3.14159 -42", "JSON: {\"k\": [1, null]}"]
PROMPTS = ["The capital of France is", "def fibonacci(n):\n", "Die Hauptstadt von Deutschland ist", "1, 2, 3, 4,"]
GREEDY_TOKENS = 24


def held_out_text() -> str:
    import functools

    return inspect.getdoc(json) + "\n\n" + inspect.getdoc(functools.reduce) + "\n\n" + inspect.getdoc(functools.lru_cache)


def perplexity(logits: torch.Tensor, ids: list[int]) -> float:
    logp = torch.log_softmax(logits[:-1].float(), dim=-1)
    nll = -logp.gather(1, torch.tensor(ids[1:])[:, None]).mean()
    return math.exp(nll.item())


def greedy(forward, ids: list[int]) -> list[int]:
    out = list(ids)
    for _ in range(GREEDY_TOKENS):
        out.append(int(forward(out)[-1].argmax()))
    return out[len(ids):]


def ours(path: Path, precision: str):
    loaded = load_model(path, precision=precision)
    model = loaded.model

    def forward(ids: list[int]) -> torch.Tensor:
        model.setup_cache(1, len(ids))
        with torch.inference_mode():
            return model(torch.tensor([ids]))[0]

    return loaded.tokenizer, forward


def reference(path: Path, tokenizer) -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    theirs = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    same = sum(theirs(t, add_special_tokens=False)["input_ids"] == tokenizer.encode(t) for t in TOKENIZER_TEXTS)
    print(f"  tokenizer: the same ids as transformers' for {same} of {len(TOKENIZER_TEXTS)} texts")

    def forward(ids: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            return model(torch.tensor([ids])).logits[0]

    return forward


def check(name: str) -> None:
    path = resolve(name)
    text = held_out_text()
    runs = {}
    tokenizer = None
    for way in ("exact", "fast", "transformers"):
        start = time.perf_counter()
        try:
            if way == "transformers":
                forward = reference(path, tokenizer)
            else:
                tokenizer, forward = ours(path, way)
        except ImportError:
            print(f"  {way}: not installed, skipped")
            continue
        load_s = time.perf_counter() - start
        bos = [tokenizer.bos_token_id] if tokenizer.add_bos and tokenizer.bos_token_id is not None else []
        ids = bos + tokenizer.encode(text)
        logits = forward(ids)
        runs[way] = {"load_s": load_s, "logits": logits, "ppl": perplexity(logits, ids),
                     "greedy": [greedy(forward, bos + tokenizer.encode(p)) for p in PROMPTS]}
    print(f"\n{name} ({path.name}, {len(ids)} tokens of held-out text)")
    print("| way | load s | perplexity | top-1 agrees with transformers | max logit diff | greedy tokens as transformers |")
    print("|---|---|---|---|---|---|")
    ref = runs.get("transformers")
    for way, run in runs.items():
        agree = diff = same = "-"
        if ref is not None:
            agree = f"{(run['logits'].argmax(-1) == ref['logits'].argmax(-1)).float().mean().item():.1%}"
            diff = f"{(run['logits'] - ref['logits']).abs().max().item():.4f}"
            equal = sum(a == b for g, r in zip(run["greedy"], ref["greedy"]) for a, b in zip(g, r))
            same = f"{equal}/{GREEDY_TOKENS * len(PROMPTS)}"
        print(f"| {way} | {run['load_s']:.1f} | {run['ppl']:.3f} | {agree} | {diff} | {same} |")
    for prompt, continuation in zip(PROMPTS, runs["exact"]["greedy"]):
        print(f"  {prompt!r} -> {tokenizer.decode(continuation)!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["gemma3-270m"], help=f"names ({', '.join(KNOWN_MODELS)}) or paths")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    for name in args.models:
        check(name)


if __name__ == "__main__":
    main()
