"""The tile step both attention kernels share: scores, then the online-softmax update."""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def tile_scores(q, k, qk_scale, IEEE: tl.constexpr):
    """q [M, D] @ k [D, N] times the scale, in the log2 domain (qk_scale includes log2(e))."""
    if IEEE:
        qk = tl.dot(q, k, input_precision="ieee")
    else:
        qk = tl.dot(q, k)
    return qk * qk_scale


@triton.jit
def online_softmax_update(qk, v, m_i, l_i, acc, IEEE: tl.constexpr):
    """Folds one tile of masked scores and its values into the running max, sum and output."""
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    alpha = tl.math.exp2(m_i - m_new)
    p = tl.math.exp2(qk - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    if IEEE:
        acc += tl.dot(p, v, input_precision="ieee")
    else:
        acc += tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc
