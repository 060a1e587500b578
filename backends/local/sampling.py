"""Picking the next token from logits. Greedy and temperature sampling with top-k, top-p, min-p.

Returns the log-probabilities of the distribution the token was actually drawn from, so
that what the decoding panel shows is what decided.
"""

from __future__ import annotations

import torch
from torch import Tensor

from backends.types import SamplingParams


class Sampler:
    def __init__(self, params: SamplingParams, device: torch.device) -> None:
        self.params = params
        self.generator = torch.Generator(device=device)
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()

    def distribution(self, logits: Tensor) -> Tensor:
        """Log-probabilities after temperature and filtering; -inf where a token is ruled out."""
        p = self.params
        logits = logits.float()
        if p.logit_bias:
            ids = torch.tensor(list(p.logit_bias), device=logits.device)
            logits = logits.index_add(0, ids, torch.tensor(list(p.logit_bias.values()), device=logits.device))
        if p.greedy:
            return torch.log_softmax(logits, dim=-1)
        logits = logits / p.temperature
        if p.top_k and p.top_k < logits.numel():
            kth = torch.topk(logits, p.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        logprobs = torch.log_softmax(logits, dim=-1)
        if p.top_p < 1.0:
            sorted_lp, order = torch.sort(logprobs, descending=True)
            mass_before = sorted_lp.exp().cumsum(-1) - sorted_lp.exp()
            drop = order[mass_before >= p.top_p]  # keep the smallest prefix whose mass reaches top_p
            logprobs = torch.log_softmax(logprobs.index_fill(0, drop, float("-inf")), dim=-1)
        if p.min_p > 0.0:
            floor = logprobs.max() + torch.log(torch.tensor(p.min_p))
            logprobs = torch.log_softmax(logprobs.masked_fill(logprobs < floor, float("-inf")), dim=-1)
        return logprobs

    def __call__(self, logits: Tensor) -> tuple[int, Tensor]:
        logprobs = self.distribution(logits)
        if self.params.greedy:
            return int(torch.argmax(logprobs)), logprobs
        token = torch.multinomial(logprobs.exp(), 1, generator=self.generator)
        return int(token), logprobs
