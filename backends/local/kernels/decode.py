"""Flash-decoding in Triton: one query token per sequence against a long KV cache.

The cache of each sequence is cut into chunks that separate programs read in parallel (so
the GPU stays busy at batch 1); each program handles every query head that shares one K/V
head, so a K/V tile is loaded once per group, and writes a partial output with its
log-sum-exp. A second kernel merges the partials. Sequences in a batch may differ in length.
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
def _decode_split_kernel(
    Q, K, V, SeqLens, PartO, PartLse,
    sqb, sqh, sqd,
    skb, skh, skt, skd,
    svb, svh, svt, svd,
    spb, sph, sps, spd,
    slb, slh, sls,
    n_kv_heads, head_dim, qk_scale, chunk,
    GROUP: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    split = tl.program_id(1)
    b = pid_bh // n_kv_heads
    kv_h = pid_bh % n_kv_heads
    seq_len = tl.load(SeqLens + b)
    lo = split * chunk
    hi = tl.minimum(lo + chunk, seq_len)

    offs_g = tl.arange(0, BLOCK_G)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    heads = kv_h * GROUP + offs_g
    mask_g = offs_g < GROUP
    mask_d = offs_d < head_dim
    q = tl.load(Q + b * sqb + heads[:, None] * sqh + offs_d[None, :] * sqd,
                mask=mask_g[:, None] & mask_d[None, :], other=0.0)
    k_base = K + b * skb + kv_h * skh
    v_base = V + b * svb + kv_h * svh

    m_i = tl.full([BLOCK_G], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        in_range = cols < hi
        k = tl.load(k_base + cols[None, :] * skt + offs_d[:, None] * skd,
                    mask=in_range[None, :] & mask_d[:, None], other=0.0)
        qk = tl.where(in_range[None, :], tile_scores(q, k, qk_scale, IEEE), float("-inf"))
        v = tl.load(v_base + cols[:, None] * svt + offs_d[None, :] * svd,
                    mask=in_range[:, None] & mask_d[None, :], other=0.0)
        m_i, l_i, acc = online_softmax_update(qk, v, m_i, l_i, acc, IEEE)
    has_keys = l_i > 0
    out = acc / tl.where(has_keys, l_i, 1.0)[:, None]
    lse = tl.where(has_keys, m_i + tl.math.log2(tl.where(has_keys, l_i, 1.0)), float("-inf"))
    tl.store(PartO + b * spb + heads[:, None] * sph + split * sps + offs_d[None, :] * spd, out,
             mask=mask_g[:, None] & mask_d[None, :])
    tl.store(PartLse + b * slb + heads * slh + split * sls, lse, mask=mask_g)


@triton.jit
def _decode_merge_kernel(
    PartO, PartLse, O,
    spb, sph, sps, spd,
    slb, slh, sls,
    sob, soh, sod,
    n_q_heads, n_splits, head_dim,
    BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    b = pid // n_q_heads
    h = pid % n_q_heads
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    mask_s = offs_s < n_splits
    mask_d = offs_d < head_dim
    lse = tl.load(PartLse + b * slb + h * slh + offs_s * sls, mask=mask_s, other=float("-inf"))
    top = tl.max(lse, 0)
    top = tl.where(top == float("-inf"), 0.0, top)
    weight = tl.where(mask_s, tl.math.exp2(lse - top), 0.0)
    parts = tl.load(PartO + b * spb + h * sph + offs_s[:, None] * sps + offs_d[None, :] * spd,
                    mask=mask_s[:, None] & mask_d[None, :], other=0.0)
    total = tl.sum(weight, 0)
    out = tl.sum(parts * weight[:, None], 0) / tl.where(total > 0, total, 1.0)
    tl.store(O + b * sob + h * soh + offs_d * sod, out.to(O.dtype.element_ty), mask=mask_d)


def _multiprocessors(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def choose_splits(batch: int, n_kv_heads: int, max_len: int, block_n: int, device: torch.device) -> int:
    """Enough programs to fill the GPU twice over, but never a split with less than one tile."""
    wanted = triton.cdiv(2 * _multiprocessors(device), batch * n_kv_heads)
    return max(1, min(wanted, triton.cdiv(max_len, block_n), 128))


def decode_attention(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, seq_lens: Tensor, scale: float | None = None,
    num_splits: int | None = None,
) -> Tensor:
    """q [B, Hq, D]; k_cache, v_cache [B, Hkv, Tmax, D]; seq_lens int32 [B] -> [B, Hq, D].

    Sequence b attends to positions [0, seq_lens[b]); a sequence of length 0 gets zeros.
    """
    batch, n_q_heads, head_dim = q.shape
    check_attention_inputs(q, k_cache, v_cache)
    if seq_lens.shape != (batch,):
        raise ValueError(f"seq_lens must have shape ({batch},), got {tuple(seq_lens.shape)}")
    n_kv_heads, max_len = k_cache.shape[1], k_cache.shape[2]
    seq_lens = seq_lens.to(device=q.device, dtype=torch.int32)
    scale = scale if scale is not None else 1.0 / math.sqrt(head_dim)
    block_n = 32 if interpreting() else 64
    splits = num_splits or choose_splits(batch, n_kv_heads, max_len, block_n, q.device)
    chunk = triton.cdiv(triton.cdiv(max(max_len, 1), splits), block_n) * block_n
    splits = max(1, triton.cdiv(max_len, chunk))
    group = n_q_heads // n_kv_heads
    part_o = torch.empty(batch, n_q_heads, splits, head_dim, device=q.device, dtype=torch.float32)
    part_lse = torch.empty(batch, n_q_heads, splits, device=q.device, dtype=torch.float32)
    _decode_split_kernel[(batch * n_kv_heads, splits)](
        q, k_cache, v_cache, seq_lens, part_o, part_lse,
        *q.stride(), *k_cache.stride(), *v_cache.stride(), *part_o.stride(), *part_lse.stride(),
        n_kv_heads, head_dim, scale * LOG2E, chunk,
        GROUP=group, IEEE=q.dtype == torch.float32,
        BLOCK_G=max(16, triton.next_power_of_2(group)), BLOCK_N=block_n, BLOCK_D=block_d(head_dim),
        num_warps=4, num_stages=1 if interpreting() else 3,
    )
    out = torch.empty_like(q)
    _decode_merge_kernel[(batch * n_q_heads,)](
        part_o, part_lse, out,
        *part_o.stride(), *part_lse.stride(), *out.stride(),
        n_q_heads, splits, head_dim,
        BLOCK_S=max(2, triton.next_power_of_2(splits)), BLOCK_D=block_d(head_dim),
    )
    return out
