"""Direct preference optimization (Rafailov et al., 2023) of a LoRA adapter.

loss = -log sigmoid(beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))))
over the response tokens of each pair. The reference is the model as training starts: the base
model (a new adapter starts as the identity), or the base with the SFT adapter it was loaded with,
whose updates then continue into one self-contained adapter. Its log-probabilities are computed
once before the first step, so no second copy of the model is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field

from backends.local import lora
from backends.local.backend import LocalBackend
from train.data import Encoded, encode, read_pairs
from train.loop import Step, TrainConfig, split
from train.sft import TrainResult, check_exact, token_logprobs, train_adapter


class DPOConfig(TrainConfig):
    beta: float = Field(0.1, gt=0)
    lr: float = Field(5e-5, gt=0)


@dataclass
class Pair:
    chosen: Encoded
    rejected: Encoded
    reference: tuple[float, float] = (0.0, 0.0)  # the reference's log-probabilities of chosen and rejected


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, float, float]:
    """(mean loss, mean reward margin, share of pairs whose chosen reply is preferred); inputs are sequence log-probabilities."""
    margins = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
    detached = margins.detach()
    return -F.logsigmoid(margins).mean(), float(detached.mean()), float((detached > 0).float().mean())


def sequence_logprob(model: torch.nn.Module, example: Encoded) -> torch.Tensor:
    logprobs, trained = token_logprobs(model, example)
    return (logprobs * trained).sum()


def dpo(backend: LocalBackend, data: Path, out: Path, config: DPOConfig | None = None,
        on_step: Callable[[Step, int], None] | None = None) -> TrainResult:
    """Trains on the preference pairs in `data` (JSONL) and saves the adapter in `out`. A backend
    loaded with an adapter (from SFT) goes on training that adapter; otherwise a new one starts."""
    config = config or DPOConfig()
    check_exact(backend)
    rows, skipped = read_pairs(data)
    pairs = []
    for line, prompt, chosen, rejected in rows:
        try:
            pairs.append(Pair(encode(backend, prompt + chosen, line, config.max_tokens, replies_from=len(prompt)),
                              encode(backend, prompt + rejected, line, config.max_tokens, replies_from=len(prompt))))
        except ValueError as exc:
            skipped.append(f"line {line}: {exc}")
    if not pairs:
        raise ValueError(f"{data}: no usable pairs" + (f" ({'; '.join(skipped[:3])})" if skipped else ""))
    model = backend.loaded.model
    with torch.no_grad():
        for pair in pairs:
            pair.reference = (float(sequence_logprob(model, pair.chosen)), float(sequence_logprob(model, pair.rejected)))
    torch.manual_seed(config.seed)
    layers = lora.adapters(model)
    if layers:  # continue the loaded adapter, with its own rank and targets
        params = [p for layer in layers.values() for p in (layer.lora_a, layer.lora_b)]
        first = next(iter(layers.values()))
        config = config.model_copy(update={"rank": first.lora_a.shape[0], "alpha": first.scale * first.lora_a.shape[0],
                                           "targets": sorted({name.rsplit(".", 1)[1] for name in layers})})
    else:
        params = lora.attach(model, config.lora())
    train, held = split(pairs, config)

    def losses(batch: Sequence[Pair]) -> tuple[torch.Tensor, float, float]:
        chosen = torch.stack([sequence_logprob(model, p.chosen) for p in batch])
        rejected = torch.stack([sequence_logprob(model, p.rejected) for p in batch])
        ref = torch.tensor([p.reference for p in batch], device=model.device)
        return dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], config.beta)

    def batch_loss(batch: Sequence[Pair]) -> tuple[torch.Tensor, int, int, dict[str, float]]:
        loss, margin, accuracy = losses(batch)
        counted = sum(sum(p.chosen.trained) + sum(p.rejected.trained) for p in batch)
        processed = sum(len(p.chosen.ids) + len(p.rejected.ids) for p in batch)
        return loss, counted, processed, {"reward_margin": margin, "accuracy": accuracy}

    def evaluate() -> float | None:
        return float(losses(held)[0]) if held else None

    return train_adapter(backend, "dpo", data, out, config, params, train, held, batch_loss, evaluate, skipped, on_step)
