"""The decoding loop: prefill once, then one token at a time. A plain generator."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from backends.local.model import Transformer

PickToken = Callable[[Tensor], tuple[int, Tensor]]


@torch.inference_mode()  # the cache's tensors are inference tensors: updating them outside fails
def prepare_cache(model: Transformer, prompt_ids: Sequence[int], max_new_tokens: int) -> int:
    """Sizes the KV cache for the request; returns how many prompt tokens it already holds."""
    model.setup_cache(1, len(prompt_ids) + max_new_tokens)
    return model.reusable_prefix(prompt_ids)


@torch.inference_mode()
def decode(model: Transformer, prompt_ids: Sequence[int], pick: PickToken, max_new_tokens: int) -> Iterator[tuple[int, Tensor]]:
    """Yields (token id, log-probabilities it was drawn from) until the consumer stops or the budget ends.

    The prompt's prefix that the cache already holds (an earlier turn of the same
    conversation, a shared system prompt) is not computed again.
    """
    logits = model.prefill(prompt_ids, prepare_cache(model, prompt_ids, max_new_tokens))
    position = len(prompt_ids)
    for step in range(max_new_tokens):
        token, logprobs = pick(logits)
        yield token, logprobs
        if step + 1 < max_new_tokens:  # only when the consumer asks for another token
            logits = model(torch.tensor([[token]], device=model.device), start=position)[0, -1]
            position += 1
