"""The one attention function the model calls; it picks the implementation.

torch's scaled_dot_product_attention on the CPU; the Triton kernels on CUDA once they are
wired in. `TOKENTRAIL_ATTENTION=torch|triton` overrides the choice.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS = ("torch", "triton")


def choose(device: torch.device, requested: str | None = None) -> str:
    name = requested or os.environ.get("TOKENTRAIL_ATTENTION") or ("triton" if device.type == "cuda" else "torch")
    if name not in BACKENDS:
        raise ValueError(f"attention implementation {name!r} is unknown; choose one of {', '.join(BACKENDS)}")
    return name


def causal_mask(tq: int, tk: int, device: torch.device) -> Tensor:
    """Bottom-right aligned: query i sees keys j <= i + (tk - tq)."""
    rows = torch.arange(tq, device=device)[:, None] + (tk - tq)
    return torch.arange(tk, device=device)[None, :] <= rows


def attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True) -> Tensor:
    """q [B, Hq, Tq, D]; k, v [B, Hkv, Tk, D] with Tk >= Tq; the queries are the last Tq positions."""
    tq, tk = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if not causal or tq == 1:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    if tq == tk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(tq, tk, q.device), enable_gqa=gqa)
