"""Prefill and decode speed of the default model at batch 1: ours beside transformers and llama.cpp.

    .venv/bin/python benchmarks/decode.py [--new-tokens 64] [--repeats 3]

transformers (pip install -e ".[goldens]") and llama-cpp-python are optional peers: each
column appears when its package is installed. All run in this process, on the same machine,
on the same GGUF file and the same prompt.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends import Message  # noqa: E402
from backends.local.backend import LocalBackend  # noqa: E402
from backends.local.generate import decode  # noqa: E402
from backends.local.store import pull  # noqa: E402

PROMPT = "Explain, step by step, how a bicycle's gears make it easier to climb a hill."
LONG_PROMPT = " ".join(["The history of the bicycle spans two centuries of invention and refinement."] * 40)

Timing = tuple[float, float]  # (prefill tokens/s, decode tokens/s)


def best(runs: list[Timing]) -> Timing:
    return max(r[0] for r in runs), statistics.median(r[1] for r in runs)


def ours(backend: LocalBackend, ids: list[int], new: int) -> Timing:
    model, eos = backend.loaded.model, set(backend.tokenizer.eos_token_ids)

    def pick(logits: torch.Tensor) -> tuple[int, torch.Tensor]:
        logits = logits.clone()
        logits[list(eos)] = float("-inf")  # decode exactly `new` tokens
        return int(logits.argmax()), logits

    start = time.perf_counter()
    steps = decode(model, ids, pick, new)
    next(steps)
    first = time.perf_counter()
    for _ in steps:
        pass
    end = time.perf_counter()
    return len(ids) / (first - start), (new - 1) / (end - first)


def transformers_peer(gguf: Path) -> tuple[Callable[[list[int], int], Timing], Callable[[list[int], int], Timing]] | None:
    try:
        from transformers import AutoModelForCausalLM, DynamicCache
    except ImportError:
        return None
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()

    @torch.inference_mode()
    def cache_loop(ids: list[int], new: int) -> Timing:
        cache = DynamicCache()
        start = time.perf_counter()
        out = model(torch.tensor([ids]), past_key_values=cache, use_cache=True)
        token = out.logits[0, -1].argmax().view(1, 1)
        first = time.perf_counter()
        for _ in range(new - 1):
            out = model(token, past_key_values=out.past_key_values, use_cache=True)
            token = out.logits[0, -1].argmax().view(1, 1)
        end = time.perf_counter()
        return len(ids) / (first - start), (new - 1) / (end - first)

    @torch.inference_mode()
    def generate(ids: list[int], new: int) -> Timing:
        prompt = torch.tensor([ids])
        start = time.perf_counter()
        model.generate(prompt, max_new_tokens=1, do_sample=False)
        first = time.perf_counter()
        model.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False)
        end = time.perf_counter()
        prefill = first - start
        return len(ids) / prefill, (new - 1) / max(end - first - prefill, 1e-9)

    return cache_loop, generate


def llama_cpp_peer(gguf: Path, threads: int) -> Callable[[list[int], int], Timing] | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, n_batch=512, verbose=False)

    def run(ids: list[int], new: int) -> Timing:
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        first = time.perf_counter()
        for _ in range(new - 1):
            token = llm.sample(temp=0.0)
            llm.eval([token])
        end = time.perf_counter()
        return len(ids) / (first - start), (new - 1) / (end - first)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    gguf = pull("smollm2")
    backend = LocalBackend(model=str(gguf))
    prompts = {
        "chat prompt": backend.tokenizer.encode(backend.render([Message(role="user", content=PROMPT)])),
        "long prompt": backend.tokenizer.encode(backend.render([Message(role="user", content=LONG_PROMPT)])),
    }
    engines: dict[str, Callable[[list[int], int], Timing]] = {"tokentrail (fp32)": lambda ids, n: ours(backend, ids, n)}
    peers = transformers_peer(gguf)
    if peers:
        engines["transformers cache loop (fp32)"], engines["transformers generate() (fp32)"] = peers
    llama = llama_cpp_peer(gguf, threads)
    if llama:
        engines["llama.cpp (Q4_1)"] = llama

    print(f"SmolLM2-135M-Instruct, batch 1, {threads} threads, {args.new_tokens} new tokens, best of {args.repeats}")
    print(f"{'engine':34} {'prompt':>12} {'prefill tok/s':>14} {'decode tok/s':>13}")
    for label, ids in prompts.items():
        for name, run in engines.items():
            run(ids[:8], 4)  # warm-up
            prefill, decode_rate = best([run(ids, args.new_tokens) for _ in range(args.repeats)])
            print(f"{name:34} {f'{label} ({len(ids)})':>12} {prefill:14.1f} {decode_rate:13.1f}")
    missing = [p for p, ok in (("transformers", peers), ("llama-cpp-python", llama)) if not ok]
    if missing:
        print(f"(not installed, so not measured: {', '.join(missing)})")


if __name__ == "__main__":
    main()
