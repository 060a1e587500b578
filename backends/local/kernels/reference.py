"""Torch references for the attention kernels: plain math in float32, for tests and the CPU path."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check_gqa(hq: int, hkv: int) -> int:
    if hq % hkv:
        raise ValueError(f"query heads ({hq}) must be a multiple of key/value heads ({hkv})")
    return hq // hkv


def prefill_attention_ref(q: Tensor, k: Tensor, v: Tensor, causal: bool = True, scale: float | None = None) -> Tensor:
    """q [B, Hq, Tq, D]; k, v [B, Hkv, Tk, D]; causal aligned bottom-right. Returns q's dtype."""
    group = _check_gqa(q.shape[1], k.shape[1])
    tq, tk, d = q.shape[2], k.shape[2], q.shape[3]
    scale = scale if scale is not None else 1.0 / math.sqrt(d)
    kf = k.float().repeat_interleave(group, dim=1)
    vf = v.float().repeat_interleave(group, dim=1)
    scores = (q.float() @ kf.transpose(-1, -2)) * scale
    if causal:
        rows = torch.arange(tq, device=q.device)[:, None] + (tk - tq)
        scores = scores.masked_fill(torch.arange(tk, device=q.device)[None, :] > rows, float("-inf"))
    return (scores.softmax(-1) @ vf).to(q.dtype)


def decode_attention_ref(q: Tensor, k_cache: Tensor, v_cache: Tensor, seq_lens: Tensor, scale: float | None = None) -> Tensor:
    """q [B, Hq, D]; caches [B, Hkv, Tmax, D]; sequence b attends to its first seq_lens[b] positions."""
    group = _check_gqa(q.shape[1], k_cache.shape[1])
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    kf = k_cache.float().repeat_interleave(group, dim=1)
    vf = v_cache.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("bhd,bhtd->bht", q.float(), kf) * scale
    positions = torch.arange(k_cache.shape[2], device=q.device)
    scores = scores.masked_fill(positions[None, None, :] >= seq_lens.to(q.device)[:, None, None], float("-inf"))
    return torch.einsum("bht,bhtd->bhd", scores.softmax(-1), vf).to(q.dtype)
