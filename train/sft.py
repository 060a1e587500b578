"""Supervised fine-tuning of a LoRA adapter: loss on the assistant's tokens only.

Trains in float32 on the exact engine; the adapter it saves applies to either precision.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel

from backends.local import lora
from backends.local.backend import LocalBackend
from train.data import Encoded, encode, read_messages
from train.loop import BatchLoss, Step, TrainConfig, fit, split


class SFTConfig(TrainConfig):
    pass


class TrainResult(BaseModel):
    adapter: str
    steps: list[Step]
    trained_examples: int
    held_out_examples: int
    skipped: list[str]  # "line N: why"
    seconds: float


def check_exact(backend: LocalBackend) -> None:
    if backend.loaded.precision != "exact":
        raise ValueError(f"training needs precision='exact' (float32); this model was loaded as {backend.loaded.precision!r}")


def token_logprobs(model: torch.nn.Module, example: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probability of each next token, whether it is trained), for positions 1.."""
    ids = torch.tensor([example.ids], device=model.device)
    logits = model(ids, start=0)[0, :-1].float()
    logprobs = -F.cross_entropy(logits, ids[0, 1:], reduction="none")
    return logprobs, torch.tensor(example.trained[1:], device=model.device)


def nll(model: torch.nn.Module, examples: Sequence[Encoded]) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the trained tokens, and how many there are."""
    total, count = torch.zeros((), device=model.device), 0
    for example in examples:
        logprobs, trained = token_logprobs(model, example)
        total = total - (logprobs * trained).sum()
        count += int(trained.sum())
    return total, count


def encoded_examples(backend: LocalBackend, data: Path, max_tokens: int) -> tuple[list[Encoded], list[str]]:
    rows, skipped = read_messages(data)
    encoded = []
    for line, messages in rows:
        try:
            encoded.append(encode(backend, messages, line, max_tokens))
        except ValueError as exc:
            skipped.append(f"line {line}: {exc}")
    encoded = [e for e in encoded if any(e.trained[1:])]
    if not encoded:
        raise ValueError(f"{data}: no usable examples" + (f" ({'; '.join(skipped[:3])})" if skipped else ""))
    return encoded, skipped


def save_adapter(backend: LocalBackend, out: Path, config: TrainConfig, data: str | Path, skipped: list[str], kind: str) -> None:
    adapter = config.lora().model_copy(update=lora.identity(backend.loaded.model, backend.loaded.name))
    lora.save(backend.loaded.model, out, adapter)
    (out / "training.json").write_text(json.dumps({"kind": kind, "data": str(data), "config": config.model_dump(),
                                                   "skipped": skipped}, indent=2))


def train_adapter(backend: LocalBackend, kind: str, data: str | Path, out: Path, config: TrainConfig,
                  params: list[torch.nn.Parameter], train: list, held: list, batch_loss: BatchLoss,
                  evaluate: Callable[[], float | None], skipped: list[str],
                  on_step: Callable[[Step, int], None] | None) -> TrainResult:
    """Runs the loop, saves the adapter in `out` and reports: the part SFT and DPO share."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    steps = fit(backend.loaded.model, params, train, batch_loss, config, out / "log.jsonl", evaluate, on_step)
    save_adapter(backend, out, config, data, skipped, kind)
    return TrainResult(adapter=str(out), steps=steps, trained_examples=len(train), held_out_examples=len(held),
                       skipped=skipped, seconds=time.perf_counter() - started)


def sft(backend: LocalBackend, data: Path, out: Path, config: SFTConfig | None = None,
        on_step: Callable[[Step, int], None] | None = None) -> TrainResult:
    """Trains a LoRA adapter on the chat examples in `data` (JSONL) and saves it in `out`.

    on_step(step, total steps) after every optimizer step (progress bars, loss curves).
    """
    config = config or SFTConfig()
    check_exact(backend)
    examples, skipped = encoded_examples(backend, data, config.max_tokens)
    train, held = split(examples, config)
    model = backend.loaded.model
    torch.manual_seed(config.seed)
    params = lora.attach(model, config.lora())

    def batch_loss(batch: Sequence[Encoded]) -> tuple[torch.Tensor, int, int, dict[str, float]]:
        total, count = nll(model, batch)
        return total / max(count, 1), count, sum(len(e.ids) for e in batch), {}

    def evaluate() -> float | None:
        total, count = nll(model, held) if held else (None, 0)
        return None if total is None else float(total) / max(count, 1)

    return train_adapter(backend, "sft", data, out, config, params, train, held, batch_loss, evaluate, skipped, on_step)
