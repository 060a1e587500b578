"""Logits processors: each one a small function from logits to logits, composed in a fixed order.

Order: logit bias, penalties, grammar mask (all on raw logits), then temperature and the
truncations (top-k, top-p, min-p). The token is drawn from the softmax of the result, and
that same distribution is what logprobs report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from backends.types import SamplingParams

NEG_INF = float("-inf")


@dataclass
class History:
    """What the penalties look at: the prompt and the tokens generated so far."""

    prompt: Sequence[int]
    generated: list[int] = field(default_factory=list)
    _counts: dict[int, int] = field(default_factory=dict)

    def add(self, token: int) -> None:
        self.generated.append(token)
        self._counts[token] = self._counts.get(token, 0) + 1

    def counts(self) -> dict[int, int]:
        return self._counts


Processor = Callable[[Tensor, History], Tensor]


def logit_bias(bias: dict[int, float]) -> Processor:
    ids, values = list(bias), list(bias.values())

    def apply(logits: Tensor, history: History) -> Tensor:
        index = torch.tensor(ids, device=logits.device)
        return logits.index_add(0, index, torch.tensor(values, device=logits.device, dtype=logits.dtype))

    return apply


def repetition_penalty(penalty: float) -> Processor:
    """Hugging Face's rule: a seen token's positive logit is divided by the penalty, a negative one multiplied."""

    def apply(logits: Tensor, history: History) -> Tensor:
        seen = torch.tensor(sorted(set(history.prompt) | set(history.counts())), device=logits.device, dtype=torch.long)
        if seen.numel() == 0:
            return logits
        picked = logits[seen]
        return logits.index_copy(0, seen, torch.where(picked > 0, picked / penalty, picked * penalty))

    return apply


def frequency_presence_penalty(frequency: float, presence: float) -> Processor:
    """OpenAI's rule, over generated tokens: logit -= frequency * count + presence * (count > 0)."""

    def apply(logits: Tensor, history: History) -> Tensor:
        counts = history.counts()
        if not counts:
            return logits
        ids = torch.tensor(list(counts), device=logits.device)
        n = torch.tensor(list(counts.values()), device=logits.device, dtype=logits.dtype)
        return logits.index_add(0, ids, -(frequency * n + presence))

    return apply


def temperature(value: float) -> Processor:
    return lambda logits, history: logits / value


def top_k(k: int) -> Processor:
    def apply(logits: Tensor, history: History) -> Tensor:
        if k >= logits.numel():
            return logits
        kth = torch.topk(logits, k).values[-1]
        return logits.masked_fill(logits < kth, NEG_INF)

    return apply


def top_p(p: float) -> Processor:
    """Keeps the smallest set of most likely tokens whose probability mass reaches p."""

    def apply(logits: Tensor, history: History) -> Tensor:
        probs = torch.softmax(logits, dim=-1)
        sorted_probs, order = torch.sort(probs, descending=True)
        mass_before = sorted_probs.cumsum(-1) - sorted_probs
        return logits.index_fill(0, order[mass_before >= p], NEG_INF)

    return apply


def min_p(p: float) -> Processor:
    """Keeps tokens whose probability is at least p times the top token's."""

    def apply(logits: Tensor, history: History) -> Tensor:
        probs = torch.softmax(logits, dim=-1)
        return logits.masked_fill(probs < p * probs.max(), NEG_INF)

    return apply


def build(params: SamplingParams, mask: Processor | None = None) -> list[Processor]:
    """The processors a request asks for, in order; the identity ones are left out."""
    chain: list[Processor] = []
    if params.logit_bias:
        chain.append(logit_bias(params.logit_bias))
    if params.repetition_penalty != 1.0:
        chain.append(repetition_penalty(params.repetition_penalty))
    if params.frequency_penalty or params.presence_penalty:
        chain.append(frequency_presence_penalty(params.frequency_penalty, params.presence_penalty))
    if mask is not None:
        chain.append(mask)
    if params.greedy:
        return chain
    if params.temperature != 1.0:
        chain.append(temperature(params.temperature))
    if params.top_k:
        chain.append(top_k(params.top_k))
    if params.top_p < 1.0:
        chain.append(top_p(params.top_p))
    if params.min_p > 0.0:
        chain.append(min_p(params.min_p))
    return chain


def apply(chain: list[Processor], logits: Tensor, history: History) -> Tensor:
    for processor in chain:
        logits = processor(logits, history)
    return logits
