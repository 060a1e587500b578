"""Supervised fine-tuning of a LoRA adapter: loss on the assistant's tokens only.

AdamW, linear warmup then cosine decay, gradient accumulation and clipping, a held-out split
whose loss is reported each epoch, and a JSONL log of every step. Trains in float32 on the
exact engine; the adapter it saves applies to either precision.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field

from backends.local import lora
from backends.local.backend import LocalBackend
from train.data import Encoded, encode, read_messages


class SFTConfig(BaseModel):
    epochs: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0)
    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] = Field(default_factory=lambda: list(lora.TARGETS))
    accumulate: int = Field(4, ge=1)  # examples per optimizer step
    warmup: float = Field(0.1, ge=0, le=1)  # share of the steps
    max_grad_norm: float = Field(1.0, gt=0)
    holdout: float = Field(0.1, ge=0, lt=1)  # share of the examples kept out to measure
    max_tokens: int = Field(1024, ge=8)
    seed: int = 0


class Step(BaseModel):
    step: int
    epoch: int
    loss: float
    lr: float
    tokens: int  # tokens the loss counted in this step
    tokens_per_s: float  # every token processed, per second
    held_out_loss: float | None = None  # at the end of an epoch


class SFTResult(BaseModel):
    adapter: str
    steps: list[Step]
    trained_examples: int
    held_out_examples: int
    skipped: list[str]  # "line N: why"
    seconds: float


@contextmanager
def training(model: torch.nn.Module) -> Iterator[None]:
    """Full sequences without the KV cache; the cache and its copies are dropped (they predate the update)."""
    caches = [layer.attention.cache for layer in model.layers]
    for layer in model.layers:
        layer.attention.cache = None
    model.cached, model.snapshots.entries = [], []
    model.rope_cache = None  # made under inference_mode by earlier decoding: autograd cannot use it
    try:
        yield
    finally:
        for layer, cache in zip(model.layers, caches):
            layer.attention.cache = cache
        model.cached = []


def example_loss(model: torch.nn.Module, example: Encoded) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of the trained tokens given everything before them, and how many there are."""
    ids = torch.tensor([example.ids], device=model.device)
    logits = model(ids, start=0)[0, :-1]
    targets = ids[0, 1:]
    trained = torch.tensor(example.trained[1:], device=model.device)
    losses = F.cross_entropy(logits.float(), targets, reduction="none")
    return (losses * trained).sum(), int(trained.sum())


def learning_rate(step: int, total: int, peak: float, warmup: float) -> float:
    warm = max(1, round(total * warmup))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def held_out_loss(model: torch.nn.Module, examples: list[Encoded]) -> float | None:
    if not examples:
        return None
    with torch.no_grad():
        total, count = 0.0, 0
        for example in examples:
            loss, n = example_loss(model, example)
            total, count = total + float(loss), count + n
    return total / max(count, 1)


def sft(backend: LocalBackend, data: Path, out: Path, config: SFTConfig | None = None,
        on_step: Callable[[Step, int], None] | None = None) -> SFTResult:
    """Trains a LoRA adapter on the chat examples in `data` (JSONL) and saves it in `out`.

    on_step(step, total steps) after every optimizer step (progress bars, loss curves).
    """
    config = config or SFTConfig()
    if backend.loaded.precision != "exact":
        raise ValueError(f"training needs precision='exact' (float32); this model was loaded as {backend.loaded.precision!r}")
    rows, skipped = read_messages(data)
    encoded = []
    for line, messages in rows:
        try:
            encoded.append(encode(backend, messages, line, config.max_tokens))
        except ValueError as exc:
            skipped.append(f"line {line}: {exc}")
    encoded = [e for e in encoded if any(e.trained[1:])]
    if not encoded:
        raise ValueError(f"{data}: no usable examples" + (f" ({'; '.join(skipped[:3])})" if skipped else ""))
    random.Random(config.seed).shuffle(encoded)
    held = encoded[: int(len(encoded) * config.holdout)] if len(encoded) > 1 else []
    train = encoded[len(held):]
    model = backend.loaded.model
    torch.manual_seed(config.seed)
    params = lora.attach(model, lora.LoRAConfig(rank=config.rank, alpha=config.alpha, dropout=config.dropout,
                                                targets=config.targets))
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    total = config.epochs * math.ceil(len(train) / config.accumulate)
    steps: list[Step] = []
    log = (out.mkdir(parents=True, exist_ok=True), open(out / "log.jsonl", "w"))[1]
    started = time.perf_counter()
    try:
        with training(model), torch.enable_grad():
            for epoch in range(config.epochs):
                order = random.Random(config.seed + epoch).sample(train, len(train))
                for first in range(0, len(order), config.accumulate):
                    batch, tick = order[first : first + config.accumulate], time.perf_counter()
                    model.train()
                    losses = [example_loss(model, e) for e in batch]
                    count = max(1, sum(n for _, n in losses))
                    loss = sum(summed for summed, _ in losses) / count
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                    lr = learning_rate(len(steps), total, config.lr, config.warmup)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    model.eval()
                    last = first + config.accumulate >= len(order)
                    step = Step(step=len(steps) + 1, epoch=epoch + 1, loss=loss.item(), lr=lr, tokens=count,
                                tokens_per_s=sum(len(e.ids) for e in batch) / (time.perf_counter() - tick),
                                held_out_loss=held_out_loss(model, held) if last else None)
                    steps.append(step)
                    log.write(step.model_dump_json() + "\n")
                    log.flush()
                    if on_step:
                        on_step(step, total)
    finally:
        log.close()
        model.requires_grad_(False)
    adapter_config = lora.LoRAConfig(rank=config.rank, alpha=config.alpha, dropout=config.dropout, targets=config.targets,
                                     **lora.identity(model, backend.loaded.name))
    lora.save(model, out, adapter_config)
    (out / "training.json").write_text(json.dumps({"data": str(data), "config": config.model_dump(),
                                                   "skipped": skipped}, indent=2))
    return SFTResult(adapter=str(out), steps=steps, trained_examples=len(train), held_out_examples=len(held),
                     skipped=skipped, seconds=time.perf_counter() - started)
