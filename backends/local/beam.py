"""Beam search: keep the `width` most likely continuations, not just the single best token.

The search is written against a small `BeamModel` interface so it can be checked on a
constructed distribution; `CachedBeams` runs it on the Transformer with one KV cache row
per beam, reordered as beams are kept or dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from backends.local.model import Transformer


class BeamModel(Protocol):
    def start(self) -> Tensor:
        """Logits [vocab] after the prompt."""

    def step(self, tokens: list[int], parents: list[int]) -> Tensor:
        """Row i continues beam parents[i] with tokens[i]; returns logits [len(tokens), vocab]."""


@dataclass
class Hypothesis:
    tokens: list[int]
    logprobs: list[float]
    score: float
    finished: bool  # ended on EOS (True) or ran out of budget (False)


@dataclass
class _Beam:
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.logprobs)


def _score(total: float, length: int, length_penalty: float) -> float:
    return total / max(length, 1) ** length_penalty


def beam_search(
    model: BeamModel,
    width: int,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    length_penalty: float = 1.0,
    early_stopping: bool = True,
) -> Hypothesis:
    eos = set(eos_ids)
    finished: list[Hypothesis] = []
    beams = [_Beam()]
    logprobs = torch.log_softmax(model.start().float(), dim=-1)[None]
    for step in range(max_new_tokens):
        candidates = []
        for i, beam in enumerate(beams):
            values, ids = torch.topk(logprobs[i], min(2 * width, logprobs.shape[-1]))
            candidates += [(beam.total + float(v), i, int(t), float(v)) for v, t in zip(values, ids)]
        candidates.sort(key=lambda c: c[0], reverse=True)
        next_beams: list[tuple[_Beam, int]] = []
        for total, parent, token, lp in candidates:
            beam = beams[parent]
            if token in eos:
                length = len(beam.tokens) + 1
                finished.append(Hypothesis(beam.tokens, beam.logprobs + [lp], _score(total, length, length_penalty), True))
            else:
                next_beams.append((_Beam(beam.tokens + [token], beam.logprobs + [lp]), parent))
            if len(next_beams) == width:
                break
        finished.sort(key=lambda h: h.score, reverse=True)
        del finished[width:]
        beams = [b for b, _ in next_beams]
        if step + 1 == max_new_tokens or _done(finished, next_beams, width, step + 1, length_penalty, early_stopping):
            break
        logprobs = torch.log_softmax(model.step([b.tokens[-1] for b in beams], [p for _, p in next_beams]).float(), dim=-1)
    open_ends = [Hypothesis(b.tokens, b.logprobs, _score(b.total, len(b.tokens), length_penalty), False) for b in beams]
    return max(finished + open_ends, key=lambda h: h.score)


def _done(finished, running, width, length, length_penalty, early_stopping) -> bool:
    if not running:
        return True
    if len(finished) < width:
        return False
    if early_stopping:
        return True
    # Another step can only add negative logprobs: stop when the best running beam cannot win.
    best_running = max(b.total for b, _ in running) / max(length, 1) ** length_penalty
    return finished[-1].score >= best_running


class CachedBeams:
    """BeamModel over the Transformer: one KV cache row per beam."""

    def __init__(self, model: Transformer, prompt: Sequence[int], width: int, max_new_tokens: int) -> None:
        self.model, self.width = model, width
        self.device = model.device
        self.prompt = list(prompt)
        self.position = len(self.prompt)
        model.setup_cache(1, len(self.prompt) + max_new_tokens)

    @torch.inference_mode()
    def start(self) -> Tensor:
        logits = self.model.prefill(self.prompt, self.model.reusable_prefix(self.prompt))
        for layer in self.model.layers:  # the prompt is prefilled once, then copied to every beam
            layer.attention.cache.repeat(self.width)
        return logits

    @torch.inference_mode()
    def step(self, tokens: list[int], parents: list[int]) -> Tensor:
        index = torch.tensor(parents + [parents[0]] * (self.width - len(parents)), device=self.device)
        for layer in self.model.layers:
            cache = layer.attention.cache
            cache.k.copy_(cache.k.index_select(0, index))
            cache.v.copy_(cache.v.index_select(0, index))
        padded = tokens + [tokens[0]] * (self.width - len(tokens))
        logits = self.model(torch.tensor(padded, device=self.device)[:, None], start=self.position)[:, -1]
        self.position += 1
        return logits[: len(tokens)]
