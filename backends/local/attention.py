"""The one attention function the model calls; it picks the implementation.

"torch": scaled_dot_product_attention. "cpu": the same, except that a decoding step of one
sequence is one call of our C++ kernel (RoPE, cache write and attention: cpu_attention.h); the
default on the CPU in fast precision where our kernels build. "triton": our kernels (flash
prefill, split-K decode), the default on CUDA; on the CPU they run only under TRITON_INTERPRET=1.
`TOKENTRAIL_ATTENTION=torch|cpu|triton` overrides the default.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor

IMPLEMENTATIONS = ("torch", "cpu", "triton")


def choose(device: torch.device, requested: str | None = None, precision: str = "fast") -> str:
    """Exact precision keeps "torch" on the CPU: its decode steps stay bit-identical to a batched row's."""
    from backends.local import cpu_kernels

    ours = device.type == "cpu" and cpu_kernels.setting() != "torch" and cpu_kernels.available()
    default = "triton" if device.type == "cuda" else "cpu" if ours and precision == "fast" else "torch"
    name = requested or os.environ.get("TOKENTRAIL_ATTENTION") or default
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {name!r} is unknown; choose one of {', '.join(IMPLEMENTATIONS)}")
    if name == "cpu" and not ours:
        raise ValueError("attention='cpu' needs the CPU and tokentrail's CPU kernels (a C++ compiler, AVX2, "
                         "TOKENTRAIL_CPU_KERNELS not 'torch'); use attention='torch'")
    if name == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("attention='triton' needs a CUDA device, or TRITON_INTERPRET=1 to run on the CPU")
    return name


def causal_mask(tq: int, tk: int, device: torch.device, window: int = 0) -> Tensor:
    """Bottom-right aligned: query i sees keys j <= i + (tk - tq), and with a window only the last `window` of them."""
    rows = torch.arange(tq, device=device)[:, None] + (tk - tq)
    cols = torch.arange(tk, device=device)[None, :]
    return (cols <= rows) & (cols > rows - window) if window else cols <= rows


def attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True, impl: str = "torch", scale: float | None = None,
              window: int = 0) -> Tensor:
    """q [B, Hq, Tq, D]; k, v [B, Hkv, Tk, D] with Tk >= Tq; the queries are the last Tq positions.

    scale: of q·k (default 1/sqrt(D)); window: each query sees only the last `window` positions, itself included."""
    tq, tk = q.shape[2], k.shape[2]
    if window and tq == 1 and tk > window:  # decoding: the window is the cache's tail
        k, v, tk = k[:, :, -window:], v[:, :, -window:], window
    windowed = bool(window) and causal and tk > window
    if impl == "triton" and not windowed:
        from backends.local.kernels import decode_attention, prefill_attention

        if tq == 1 and causal:
            seq_lens = torch.full((q.shape[0],), tk, dtype=torch.int32, device=q.device)
            return decode_attention(q[:, :, 0], k, v, seq_lens, scale=scale).unsqueeze(2)
        return prefill_attention(q, k, v, causal=causal, scale=scale)
    gqa = q.shape[1] != k.shape[1]
    if not causal or tq == 1:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa, scale=scale)
    if tq == tk and not windowed:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa, scale=scale)
    mask = causal_mask(tq, tk, q.device, window if windowed else 0)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa, scale=scale)


def last_row_weights(q: Tensor, k: Tensor, scale: float | None = None, window: int = 0) -> Tensor:
    """softmax(q·kᵀ) of the last query over the keys it sees, averaged over heads: [B, Tk] float32.

    The fused kernels never form these weights; this is computed only when a request asks for them
    (SamplingParams.attention): one extra [Hq, D] x [D, Tk] product per layer and token. The last
    query sees every key given (bottom-right causal); with a window only the last `window`."""
    b, hq, _, d = q.shape
    tk = k.shape[2]
    groups = hq // k.shape[1]
    query = q[:, :, -1].float().view(b, k.shape[1], groups, d)
    scores = torch.einsum("bkgd,bktd->bkgt", query, k.float()) * (scale or 1.0 / math.sqrt(d))
    if window and tk > window:
        scores[..., : tk - window] = float("-inf")
    return scores.softmax(dim=-1).mean(dim=(1, 2))


def rows_attention(q: Tensor, k: Tensor, v: Tensor, positions: Tensor, impl: str = "torch", scale: float | None = None,
                   window: int = 0) -> Tensor:
    """Batched: q [B, Hq, T, D], row b's queries at positions[b]..positions[b]+T-1; k, v [B, Hkv, L, D] with L
    past every position. Each query sees keys up to its own position (with a window, only the last `window`).

    On the CPU each row is its own attention over its own keys, in float32: one masked attention over
    the longest row's keys computed every row to that length, and bfloat16 attention with a mask runs
    a slow path (8 rows of one token at 1024 positions: 4.8 ms a layer, against 0.7 ms this way). A
    row's result is then the one-at-a-time engine's, whatever runs beside it."""
    if impl == "triton" and not window and q.shape[2] == 1:
        from backends.local.kernels import decode_attention

        return decode_attention(q[:, :, 0], k, v, (positions + 1).to(torch.int32), scale=scale).unsqueeze(2)
    tokens = q.shape[2]
    rows = [attention(q[b : b + 1].float(), k[b : b + 1, :, : end + tokens].float(), v[b : b + 1, :, : end + tokens].float(),
                      impl="torch", scale=scale, window=window)
            for b, end in enumerate(positions.tolist())]
    return torch.cat(rows).to(q.dtype)
