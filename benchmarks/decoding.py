"""What decoding choices cost per token, beside one decode step of the default model.

    .venv/bin/python benchmarks/decoding.py [--tokens 64]

Measures, on SmolLM2-135M (vocabulary 49,152) at batch 1: the model's decode step; each
processor chain applied to real logits; the llguidance mask (compute + apply + consume)
along a real constrained generation; and end-to-end tokens/s with and without a constraint.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends import Constraint, GenerationRequest, Message, SamplingParams  # noqa: E402
from backends.local.backend import LocalBackend  # noqa: E402
from backends.local.constraints import GrammarMask  # noqa: E402
from backends.local.processors import History  # noqa: E402
from backends.local.sampling import Sampler  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
CHAINS = {
    "greedy (argmax only)": SamplingParams(temperature=0),
    "temperature": SamplingParams(temperature=0.7),
    "temperature + top-k + top-p + min-p": SamplingParams(temperature=0.7, top_k=50, top_p=0.9, min_p=0.05),
    "all processors and penalties": SamplingParams(
        temperature=0.7, top_k=50, top_p=0.9, min_p=0.05, repetition_penalty=1.1,
        frequency_penalty=0.5, presence_penalty=0.5, logit_bias={13: -2.0},
    ),
}


def ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    backend = LocalBackend()
    model, device = backend.loaded.model, backend.device
    messages = [Message(role="user", content="Describe a person as JSON.")]
    prompt = backend.tokenizer.encode(backend.render(messages))
    with torch.inference_mode():
        model.setup_cache(1, len(prompt) + 8)
        model(torch.tensor([prompt]), start=0)
        position = len(prompt)
        step = ms(lambda: model(torch.tensor([[42]]), start=position), 20)
        logits = model(torch.tensor([prompt]), start=0, last_only=True)[0, -1]

    rows = [("model decode step", step)]
    history = list(range(200))
    for name, params in CHAINS.items():
        sampler = Sampler(params, device, prompt)
        sampler.history = History(prompt)
        for token in history:
            sampler.history.add(token)
        rows.append((f"sample: {name}", ms(lambda s=sampler: s(logits), 50)))

    mask_times: list[float] = []
    mask = GrammarMask(Constraint(json_schema=SCHEMA), backend.tokenizer, backend.loaded.config.vocab_size)
    generation = backend.generate(GenerationRequest(
        messages=messages, sampling=SamplingParams(temperature=0, max_tokens=args.tokens),
        constraint=Constraint(json_schema=SCHEMA)))
    for token in generation.token_ids:
        start = time.perf_counter()
        mask(logits, History(prompt))
        if not mask.finished:
            mask.consume(token)
        mask_times.append(time.perf_counter() - start)
    rows.append(("llguidance mask (compute + apply + consume)", 1000 * statistics.median(mask_times)))

    print(f"SmolLM2-135M, vocabulary {backend.loaded.config.vocab_size}, batch 1, {torch.get_num_threads()} threads")
    print(f"{'per token':48} {'ms':>8} {'% of decode step':>17}")
    for name, value in rows:
        print(f"{name:48} {value:8.3f} {100 * value / step:16.1f}%")

    print(f"\nend to end, {args.tokens} tokens max, greedy:")
    for label, constraint in (("unconstrained", None), ("JSON Schema", Constraint(json_schema=SCHEMA))):
        request = GenerationRequest(messages=messages, sampling=SamplingParams(temperature=0, max_tokens=args.tokens),
                                    constraint=constraint)
        start = time.perf_counter()
        out = backend.generate(request)
        elapsed = time.perf_counter() - start
        print(f"  {label:14} {len(out.token_ids):3} tokens  {len(out.token_ids) / elapsed:6.1f} tokens/s  ({out.finish_reason})")


if __name__ == "__main__":
    main()
