"""Triton attention kernels (prefill, decode) and their torch references.

Triton is imported on first use of a kernel, so the CPU path never needs it.
"""

from __future__ import annotations

from typing import Any

from backends.local.kernels.reference import decode_attention_ref, prefill_attention_ref

__all__ = ["decode_attention", "decode_attention_ref", "prefill_attention", "prefill_attention_ref"]


def __getattr__(name: str) -> Any:
    if name == "prefill_attention":
        from backends.local.kernels.prefill import prefill_attention

        return prefill_attention
    if name == "decode_attention":
        from backends.local.kernels.decode import decode_attention

        return decode_attention
    raise AttributeError(name)
