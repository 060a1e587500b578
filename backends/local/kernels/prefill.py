"""Flash-attention forward (FlashAttention-2 style) in Triton.

Each program owns BLOCK_M query rows of one head and streams K/V tiles through SRAM with an
online softmax in float32, using exp2 with the softmax scale folded into log2(e). Query
heads map to their key/value head by integer division, so grouped-query attention needs
no copies. The causal mask is aligned bottom-right: a chunk appended after a cached prefix
sees the whole prefix.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from backends.local.kernels.launch import block_d, check_attention_inputs, interpreting
from backends.local.kernels.online_softmax import LOG2E, online_softmax_update, tile_scores


@triton.jit
def _prefill_kernel(
    Q, K, V, O,
    sqb, sqh, sqt, sqd,
    skb, skh, skt, skd,
    svb, svh, svt, svd,
    sob, soh, sot, sod,
    n_q_heads, t_q, t_k, head_dim, qk_scale,
    GROUP: tl.constexpr, CAUSAL: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // n_q_heads
    h = pid_bh % n_q_heads
    kv_h = h // GROUP
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < t_q
    mask_d = offs_d < head_dim

    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :] * sqd,
                mask=mask_m[:, None] & mask_d[None, :], other=0.0)
    k_base = K + b * skb + kv_h * skh
    v_base = V + b * svb + kv_h * svh

    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)  # finite: fully masked rows stay NaN-free
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    offset = t_k - t_q  # query row i sits at key position i + offset
    hi = t_k
    if CAUSAL:
        hi = tl.minimum(t_k, (pid_m + 1) * BLOCK_M + offset)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        k = tl.load(k_base + cols[None, :] * skt + offs_d[:, None] * skd,
                    mask=(cols[None, :] < t_k) & mask_d[:, None], other=0.0)
        qk = tile_scores(q, k, qk_scale, IEEE)
        valid = cols[None, :] < t_k
        if CAUSAL:
            valid = valid & (cols[None, :] <= offs_m[:, None] + offset)
        qk = tl.where(valid, qk, float("-inf"))
        v = tl.load(v_base + cols[:, None] * svt + offs_d[None, :] * svd,
                    mask=(cols[:, None] < t_k) & mask_d[None, :], other=0.0)
        m_i, l_i, acc = online_softmax_update(qk, v, m_i, l_i, acc, IEEE)
    acc = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(O + b * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :] * sod,
             acc.to(O.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])


def prefill_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True, scale: float | None = None) -> Tensor:
    """q [B, Hq, Tq, D]; k, v [B, Hkv, Tk, D] with Tk >= Tq (when causal) and Hq % Hkv == 0."""
    batch, n_q_heads, t_q, head_dim = q.shape
    check_attention_inputs(q, k, v)
    t_k = k.shape[2]
    if causal and t_k < t_q:
        raise ValueError(f"causal attention needs at least as many keys as queries, got Tk={t_k} < Tq={t_q}")
    out = torch.empty_like(q)
    if t_q == 0 or t_k == 0:
        return out.zero_()
    scale = scale if scale is not None else 1.0 / math.sqrt(head_dim)
    if interpreting():
        block_m, block_n, warps, stages = 32, 32, 4, 1
    else:
        block_m, block_n = (128, 64) if head_dim <= 64 else (128, 32)
        warps, stages = (4 if head_dim <= 64 else 8), 3
    grid = (triton.cdiv(t_q, block_m), batch * n_q_heads)
    _prefill_kernel[grid](
        q, k, v, out,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        n_q_heads, t_q, t_k, head_dim, scale * LOG2E,
        GROUP=n_q_heads // k.shape[1], CAUSAL=causal, IEEE=q.dtype == torch.float32,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d(head_dim),
        num_warps=warps, num_stages=stages,
    )
    return out
