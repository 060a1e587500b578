"""Picking the next token: the processors, then argmax (temperature 0) or a seeded draw.

Returns the log-probabilities of the distribution the token was actually drawn from, so
that what the decoding panel shows is what decided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from backends.local import processors
from backends.local.constraints import GrammarMask
from backends.types import SamplingParams


class Sampler:
    def __init__(
        self,
        params: SamplingParams,
        device: torch.device,
        prompt: Sequence[int] = (),
        mask: GrammarMask | None = None,
    ) -> None:
        self.params = params
        self.mask = mask
        self.chain = processors.build(params, mask)
        self.history = processors.History(prompt)
        self.generator = torch.Generator(device=device)
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()

    def distribution(self, logits: Tensor) -> Tensor:
        """Log-probabilities after every processor; -inf where a token is ruled out."""
        return torch.log_softmax(processors.apply(self.chain, logits.float(), self.history), dim=-1)

    def __call__(self, logits: Tensor) -> tuple[int, Tensor]:
        processed = processors.apply(self.chain, logits.float(), self.history)
        logprobs = torch.log_softmax(processed, dim=-1)
        if self.params.greedy:
            token = int(torch.argmax(processed))
        else:
            token = int(torch.multinomial(logprobs.exp(), 1, generator=self.generator))
        self.history.add(token)
        if self.mask is not None:
            self.mask.consume(token)
        return token, logprobs

    def force(self, token: int) -> None:
        """Takes `token` as picked (a branch's given tokens): the history and the grammar move past it.

        Raises ValueError when the request's constraint does not allow it there."""
        if self.mask is not None and not bool(self.mask.allowed()[token]):
            raise ValueError(f"the request's constraint does not allow token {token} there")
        self.history.add(token)
        if self.mask is not None:
            self.mask.consume(token)


def alternatives(logprobs: Tensor, count: int, display: Callable[[int], str]) -> tuple[list[tuple[str, float]], list[int]]:
    """The `count` likeliest tokens as (text, logprob) and their ids; a token the processors ruled out
    (-inf) is no alternative, so a forced token has none."""
    if not count:
        return [], []
    values, ids = torch.topk(logprobs, count)
    kept = [(int(i), float(v)) for v, i in zip(values, ids) if v > float("-inf")]
    return [(display(i), v) for i, v in kept], [i for i, _ in kept]
