"""The optimization loop SFT and DPO share: AdamW, linear warmup then cosine decay, gradient
accumulation and clipping, a JSONL log of every step, and the model put in a state to train."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, Field

from backends.local import lora

Item = TypeVar("Item")


class TrainConfig(BaseModel):
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

    def lora(self) -> lora.LoRAConfig:
        return lora.LoRAConfig(rank=self.rank, alpha=self.alpha, dropout=self.dropout, targets=self.targets)


class Step(BaseModel):
    step: int
    epoch: int
    loss: float
    lr: float
    tokens: int  # tokens the loss counted in this step
    tokens_per_s: float  # every token processed, per second
    held_out_loss: float | None = None  # at the end of an epoch
    metrics: dict[str, float] = Field(default_factory=dict)  # DPO: reward margin, accuracy


# (loss to minimize, tokens it counted, tokens processed, metrics) for a batch of items
BatchLoss = Callable[[Sequence[Any]], tuple[torch.Tensor, int, int, dict[str, float]]]


@contextmanager
def training(model: torch.nn.Module) -> Iterator[None]:
    """Full sequences without the KV cache; the cache and its copies are dropped (they predate the update)."""
    caches = [layer.attention.cache for layer in model.layers]
    for layer in model.layers:
        layer.attention.cache = None
    model.cached, model.snapshots.entries = [], []
    model.rope_cache = None  # made under inference_mode by earlier decoding: autograd cannot use it
    try:
        with torch.enable_grad():
            yield
    finally:
        for layer, cache in zip(model.layers, caches):
            layer.attention.cache = cache
        model.cached = []
        model.eval()
        model.requires_grad_(False)


def learning_rate(step: int, total: int, peak: float, warmup: float) -> float:
    warm = max(1, round(total * warmup))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def split(items: list[Item], config: TrainConfig) -> tuple[list[Item], list[Item]]:
    """(training items, held-out items), shuffled by the seed."""
    items = random.Random(config.seed).sample(items, len(items))
    held = items[: int(len(items) * config.holdout)] if len(items) > 1 else []
    return items[len(held):], held


def fit(model: torch.nn.Module, params: list[torch.nn.Parameter], items: list[Item], batch_loss: BatchLoss,
        config: TrainConfig, log: Path, evaluate: Callable[[], float | None] = lambda: None,
        on_step: Callable[[Step, int], None] | None = None) -> list[Step]:
    """Trains `params` on `items`, `config.accumulate` at a time; evaluates at each epoch's end."""
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    total = config.epochs * math.ceil(len(items) / config.accumulate)
    steps: list[Step] = []
    with training(model), open(log, "w") as out:
        for epoch in range(config.epochs):
            order = random.Random(config.seed + epoch).sample(items, len(items))
            for first in range(0, len(order), config.accumulate):
                tick = time.perf_counter()
                model.train()
                loss, counted, processed, metrics = batch_loss(order[first : first + config.accumulate])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                lr = learning_rate(len(steps), total, config.lr, config.warmup)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                model.eval()
                seconds = time.perf_counter() - tick
                end_of_epoch = first + config.accumulate >= len(order)
                with torch.no_grad():
                    held = evaluate() if end_of_epoch else None
                step = Step(step=len(steps) + 1, epoch=epoch + 1, loss=loss.item(), lr=lr, tokens=counted,
                            tokens_per_s=processed / seconds, held_out_loss=held, metrics=metrics)
                steps.append(step)
                out.write(step.model_dump_json() + "\n")
                out.flush()
                if on_step:
                    on_step(step, total)
    return steps
