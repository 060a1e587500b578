"""Where a token looked: the model's attention weights for its row, as the strongest context positions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from backends.types import Looked, TokenAttention


def token_attention(looked: Tensor, context: Sequence[int], k: int, display: Callable[[int], str]) -> TokenAttention:
    """looked [layers, positions] (Transformer.looked); context: the ids at those positions. K past the
    context is clipped to it."""
    k, names = min(k, looked.shape[1]), {}

    def name(position: int) -> str:
        if position not in names:
            names[position] = display(context[position])
        return names[position]

    def strongest(weights: Tensor) -> list[Looked]:
        values, positions = torch.topk(weights, k)
        return [Looked(position=p, token=name(p), weight=min(v, 1.0)) for v, p in zip(values.tolist(), positions.tolist())]

    return TokenAttention(layers=[strongest(row) for row in looked], mean=strongest(looked.mean(dim=0)))
