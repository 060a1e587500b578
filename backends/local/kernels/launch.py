"""Checks and launch choices shared by the attention kernels."""

from __future__ import annotations

import os

import torch
import triton
from torch import Tensor

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def interpreting() -> bool:
    """True when Triton runs through its NumPy interpreter (TRITON_INTERPRET=1 at import time)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def block_d(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))


def check_attention_inputs(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"attention kernels take float16, bfloat16 or float32, got {q.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} disagree on batch or head dim")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads ({q.shape[1]}) must be a multiple of key/value heads ({k.shape[1]})")
    if q.shape[-1] > 256:
        raise ValueError(f"head dim {q.shape[-1]} is above the supported 256")
    if not (q.device == k.device == v.device):
        raise ValueError("q, k and v must be on the same device")
    if q.device.type != "cuda" and not interpreting():
        raise RuntimeError("the Triton kernels need a CUDA device, or TRITON_INTERPRET=1 for CPU tensors")
