"""Weights that stay quantized: GGUF blocks as int4 groups or int8 rows, and which kernels take them
(the layers that run them are in quant_layers.py).

Two CPU kernels of torch can do the work, both fast only for bfloat16 activations:
- `_weight_int4pack_mm_for_cpu`: w = (q - 8) * scale + zero, one (scale, zero) per group of
  32 inputs. Q4_0, Q4_1 and Q4_K map onto it exactly (only the scales round to bfloat16).
- `_weight_int8pack_mm`: w = q * scale, one scale per output row. Every other GGUF type
  (Q5_*, Q6_K, Q8_0, ...) is dequantized once and requantized per row.
Where our own kernels are chosen (cpu_kernels.chosen: every weight where torch's kernels run AVX2,
weights other than int4 where they run AVX-512), `linear` makes their layers instead (block_linear.py: int4,
int5 and int8 groups of 32, float32 output).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize
from torch import Tensor

from backends.local import cpu_kernels
from backends.local.block_linear import (
    Int5Blocks,
    Int8Blocks,
    fits,
    int8_blocks,
    int8_blocks_from_values,
)

GROUP = 32  # inputs per int4 (scale, zero) pair


@dataclass
class Int4Weight:
    """w[n, k] = (q[n, k] - 8) * scale[n, k // 32] + zero[n, k // 32], q kept two to a byte as GGUF's
    Q4_0 blocks and our kernels keep them: byte i of a group's 16 holds value i (low) and value i + 16 (high)."""

    nibbles: Tensor  # uint8 [N, K / 2]
    scale: Tensor  # float32 [N, K / 32]
    zero: Tensor  # float32 [N, K / 32]

    @classmethod
    def from_values(cls, q: Tensor, scale: Tensor, zero: Tensor) -> Int4Weight:
        groups = q.view(q.shape[0], -1, GROUP)
        return cls((groups[..., :16] | (groups[..., 16:] << 4)).view(q.shape[0], -1), scale, zero)

    @property
    def shape(self) -> tuple[int, int]:
        return self.nibbles.shape[0], self.nibbles.shape[1] * 2

    def values(self, start: int = 0, end: int | None = None) -> Tensor:
        """q of rows start..end as uint8 [rows, K]."""
        b = self.nibbles[start:end]
        groups = b.view(b.shape[0], -1, 16)
        return torch.cat([groups & 0x0F, groups >> 4], dim=-1).view(b.shape[0], -1)

    def dequantize(self, start: int = 0, end: int | None = None) -> Tensor:
        """Rows start..end as float32."""
        k = self.shape[1]
        q = self.values(start, end)
        groups = (q.float() - 8).view(q.shape[0], k // GROUP, GROUP)
        return (groups * self.scale[start:end, :, None] + self.zero[start:end, :, None]).view(q.shape[0], k)


@dataclass
class Int4KWeight(Int4Weight):
    """Q4_K's int4 groups (scale = d * sc, zero = 8 * scale - dmin * m a group of 32), with the scales also as the
    file has them, which our kernels read instead of float16 scale and mins: 2.5 bytes a group instead of 4 (the
    1.5B Q4_K_M model's weights read 5% fewer bytes a token), and d * sc is not rounded to float16."""

    codes: Tensor  # uint8 [N, 2 K / 32]: a row's 6-bit sc for each group, then its m
    supers: Tensor  # float16 [N, 2 K / 256]: a row's d for each block of 8 groups, then its dmin


@dataclass
class Int8Weight:
    """w[n, k] = q[n, k] * scale[n]."""

    q: Tensor  # int8 [N, K]
    scale: Tensor  # float32 [N]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.q.shape)  # type: ignore[return-value]

    def dequantize(self) -> Tensor:
        return self.q.float() * self.scale[:, None]


Weight = Tensor | Int4Weight | Int8Weight | Int8Blocks | Int5Blocks


@dataclass
class Deferred:
    """A weight made from the file only when the model takes it, so that one layer's conversions are
    in memory at a time, not the whole model's."""

    shape: tuple[int, ...]
    make: Callable[[], Weight]
    floating: bool  # makes a float tensor (not int4 or int8)

    def then(self, fn: Callable[[Weight], Weight]) -> Deferred:
        return Deferred(self.shape, lambda: fn(self.make()), self.floating)


def made(w: Weight | Deferred) -> Weight:
    return w.make() if isinstance(w, Deferred) else w


INT4_TYPES = (QT.Q4_0, QT.Q4_1, QT.Q4_K)


def _f16(blocks: np.ndarray, start: int) -> np.ndarray:
    return blocks[..., start : start + 2].copy().view(np.float16).astype(np.float32)[..., 0]


def _q4_k_scales(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8 six-bit sub-block scales and mins of a Q4_K block (ggml's get_scale_min_k4)."""
    a, b, c = packed[..., 0:4], packed[..., 4:8], packed[..., 8:12]
    scales = np.concatenate([a & 0x3F, (c & 0x0F) | ((a >> 6) << 4)], axis=-1)
    mins = np.concatenate([b & 0x3F, (c >> 4) | ((b >> 6) << 4)], axis=-1)
    return scales.astype(np.float32), mins.astype(np.float32)


def int4_from_gguf(raw: np.ndarray, qtype: QT) -> Int4Weight:
    """Q4_0 / Q4_1 / Q4_K rows (raw bytes [N, row bytes]) as int4 groups, without rounding a value."""
    n = raw.shape[0]
    as_tensor = lambda a, dtype=np.float32: torch.from_numpy(np.ascontiguousarray(a, dtype=dtype).reshape(n, -1))  # noqa: E731
    if qtype in (QT.Q4_0, QT.Q4_1):  # the blocks' nibbles are already in Int4Weight's order: copied as they are
        blocks = raw.reshape(n, -1, 18 if qtype == QT.Q4_0 else 20)
        d = _f16(blocks, 0)
        if qtype == QT.Q4_0:  # w = d * (q - 8)
            nibbles, zero = blocks[..., 2:], np.zeros_like(d)
        else:  # w = d * q + m
            nibbles, zero = blocks[..., 4:], _f16(blocks, 2) + 8 * d
        return Int4Weight(as_tensor(nibbles, np.uint8), as_tensor(d), as_tensor(zero))
    if qtype == QT.Q4_K:  # per 32-value sub-block j: w = d * sc_j * q - dmin * m_j
        blocks = raw.reshape(n, -1, 144)
        d, dmin = _f16(blocks, 0)[..., None], _f16(blocks, 2)[..., None]
        sc, mins = _q4_k_scales(blocks[..., 4:16])
        qs = blocks[..., 16:].reshape(n, -1, 4, 32)  # 4 chunks of 32 bytes: sub-blocks 2i (low), 2i+1 (high)
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)
        scale = d * sc
        zero = 8 * scale - dmin * mins
        groups = Int4Weight.from_values(as_tensor(q, np.uint8), as_tensor(scale), as_tensor(zero))
        codes = np.concatenate([sc.reshape(n, -1), mins.reshape(n, -1)], axis=1)
        supers = np.concatenate([d.reshape(n, -1), dmin.reshape(n, -1)], axis=1)
        return Int4KWeight(groups.nibbles, groups.scale, groups.zero, as_tensor(codes, np.uint8),
                           as_tensor(supers, np.float16))
    else:
        raise ValueError(f"{qtype.name} has no int4 mapping")
    return Int4Weight.from_values(as_tensor(q, np.uint8), as_tensor(scale), as_tensor(zero))


def int8_rows(w: Tensor) -> Int8Weight:
    """Symmetric per-row int8 of a float matrix."""
    w = w.float()
    scale = torch.maximum(w.amax(dim=1), -w.amin(dim=1)).clamp(min=1e-12) / 127
    q = w.div(scale[:, None]).round_().clamp_(-127, 127).to(torch.int8)
    return Int8Weight(q, scale)


def int4_groups(w: Tensor) -> Int4Weight:
    """Asymmetric int4 per group of 32 (min to max in 15 steps) of a float matrix."""
    n, k = w.shape
    groups = w.float().reshape(n, k // GROUP, GROUP)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = ((high - low) / 15).clamp(min=1e-12)
    q = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8)
    return Int4Weight.from_values(q.reshape(n, k), scale, low + 8 * scale)


def _q8_0_values(blocks: Tensor) -> tuple[Tensor, Tensor]:
    """Q8_0 blocks [N, B, 34] -> (q int8 [N, B, 32], d [N, B, 1]): w = d * q."""
    return blocks[..., 2:].view(torch.int8), blocks[..., :2].contiguous().view(torch.float16)


def _q5_0_values(blocks: Tensor) -> tuple[Tensor, Tensor]:
    """Q5_0 blocks [N, B, 22] -> (q [N, B, 32] in -16..15, d): w = d * q; bit j of the 32-bit qh is value j's fifth."""
    qh = blocks[..., 2:6].contiguous().view(torch.int32)
    qs = blocks[..., 6:].to(torch.int32)
    low = torch.cat([qs & 0x0F, qs >> 4], dim=-1)
    high = ((qh >> torch.arange(32, dtype=torch.int32)) & 1) << 4
    return (low | high) - 16, blocks[..., :2].contiguous().view(torch.float16)


_BLOCK_VALUES = {QT.Q8_0: (34, _q8_0_values), QT.Q5_0: (22, _q5_0_values)}


def _float_rows(raw: np.ndarray, qtype: QT) -> Tensor:
    """GGUF rows as float32: Q8_0 and Q5_0 with torch ops, other types with gguf's NumPy dequantizer."""
    if qtype not in _BLOCK_VALUES:
        return dequantize_rows(raw, qtype)
    size, values = _BLOCK_VALUES[qtype]
    q, d = values(torch.from_numpy(np.ascontiguousarray(raw)).view(raw.shape[0], -1, size))
    return (q.float() * d.float()).view(raw.shape[0], -1)


def requantized(raw: np.ndarray, qtype: QT, kind: str, done: Callable[[int, int], None] | None = None
                ) -> Int8Weight | Int4Weight | Int8Blocks:
    """GGUF rows (raw bytes [N, row bytes]) as int8 rows, int4 groups or int8 blocks (`kind`), about a megabyte at a time.

    As int8 blocks, Q8_0 and Q5_0 keep their own values and block scales (nothing rounds).

    Each part is written into the result's preallocated buffers: neither a float32 copy of the
    whole matrix nor a heap of small parts between the temporaries (glibc could not hand those
    holes back: +750 MB resident for Qwen2.5-0.5B's head) is ever made. done(first, end): rows
    first..end are converted (their bytes may leave memory)."""
    k = raw.shape[1] // GGML_QUANT_SIZES[qtype][1] * GGML_QUANT_SIZES[qtype][0]
    if kind == "blocks" and qtype in _BLOCK_VALUES:
        size, values = _BLOCK_VALUES[qtype]
        blocks = lambda a, b: torch.from_numpy(np.ascontiguousarray(raw[a:b])).view(-1, k // 32, size)  # noqa: E731
        return _requantize_rows(raw.shape[0], k, lambda a, b: int8_blocks_from_values(*values(blocks(a, b))), kind, done)
    return _requantize_rows(raw.shape[0], k, lambda a, b: _float_rows(raw[a:b], qtype), kind, done)


def int8_from_int4(weight: Int4Weight) -> Int8Weight:
    """int4 groups as int8 rows, for CPUs where the int8 kernel is the fast one (see int4_kernel_is_fast)."""
    return _requantize_rows(*weight.shape, weight.dequantize, "int8")  # type: ignore[return-value]


def _requantize_rows(n: int, k: int, rows_of: Callable[[int, int], Tensor | Int8Blocks], kind: str,
                     done: Callable[[int, int], None] | None = None) -> Int8Weight | Int4Weight | Int8Blocks:
    """rows_of(first, end): those rows as float32, or already as int8 blocks."""
    rows = max(16, 2**18 // k)
    if kind == "int8":
        quantize, out = int8_rows, Int8Weight(torch.empty(n, k, dtype=torch.int8), torch.empty(n))
    elif kind == "blocks":
        quantize = int8_blocks
        out = Int8Blocks(torch.empty(n, k, dtype=torch.int8), torch.empty(n, k // GROUP, dtype=torch.float16))
    else:
        quantize, out = int4_groups, Int4Weight(torch.empty(n, k // 2, dtype=torch.uint8), torch.empty(n, k // GROUP),
                                                torch.empty(n, k // GROUP))
    for i in range(0, n, rows):
        part = rows_of(i, i + rows)
        part = part if isinstance(part, Int8Blocks) else quantize(part)
        for f in fields(out):
            getattr(out, f.name)[i : i + rows] = getattr(part, f.name)
        if done:
            done(i, i + rows)
    return out


def ours() -> bool:
    """Whether quantized layers (cpu_kernels.chosen) run on tokentrail's kernels rather than torch's."""
    return cpu_kernels.chosen() == "tokentrail"


def int4_runs(shape: tuple[int, int]) -> bool:
    """Whether int4 weights of this shape run as int4 here (else as int8 rows)."""
    return (ours() and fits(shape)) or (int4_fits(shape) and int4_kernel_is_fast())


def int8_kind() -> str:
    """How weights that are not int4 are kept: int8 blocks for our kernels, int8 rows for torch's."""
    return "blocks" if ours() else "int8"


def int4_kernel_is_fast() -> bool:
    """torch's int4 kernel is fast with AVX-512 only. At batch 1 on a Zen 4 (2 threads), 8960x1536:
    AVX-512 int4 0.19 ms, int8 0.17 ms; forced to AVX2, int4 0.65 ms and int8 0.30 ms. So on AVX2
    int4 weights become int8 rows (more memory, half the time)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


def dequantize_rows(raw: np.ndarray, qtype: QT) -> Tensor:
    """GGUF rows (raw bytes [R, row bytes]) as float32 [R, row length]."""
    values = dequantize(np.ascontiguousarray(raw).reshape(-1), qtype)
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(raw.shape[0], -1))


def _parts(w: Weight) -> list[Tensor]:
    """A quantized weight's tensors, each with one row per output row."""
    return [getattr(w, f.name) for f in fields(w)]  # type: ignore[arg-type]


def kind_of(w: Weight) -> type:
    """Tensor for any float tensor (a Parameter too), else the quantized weight's class."""
    return Tensor if isinstance(w, Tensor) else type(w)


def concat(weights: list[Weight]) -> Weight:
    """Stacks weights of one kind along the output dimension (one weight is returned as it is, not copied)."""
    kind = kind_of(weights[0])
    if any(kind_of(w) is not kind for w in weights):
        raise ValueError("concat needs weights of one kind")
    if len(weights) == 1:
        return weights[0]
    if kind is Tensor:
        return torch.cat(weights)  # type: ignore[arg-type]
    return kind(*(torch.cat(parts) for parts in zip(*map(_parts, weights))))


def split_rows(w: Weight, sizes: tuple[int, ...]) -> list[Weight]:
    """A weight cut along its output rows into parts of `sizes` rows (views)."""
    if isinstance(w, Tensor):
        return list(w.split(sizes))
    return [type(w)(*parts) for parts in zip(*(t.split(sizes) for t in _parts(w)))]


def as_float(w: Weight, dtype: torch.dtype = torch.float32) -> Tensor:
    return w.to(dtype) if isinstance(w, Tensor) else w.dequantize().to(dtype)


def map_rows(w: Weight, fn: Callable[[Tensor], Tensor]) -> Weight:
    """Applies a reordering of output rows to every per-row part of a weight."""
    return fn(w) if isinstance(w, Tensor) else type(w)(*map(fn, _parts(w)))


@dataclass
class LoadSummary:
    """How each tensor of a file is kept: "int4" (exact mapping), "int8" (requantized), "rows" (file blocks)."""

    tensors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, name: str) -> None:
        self.tensors.setdefault(kind, []).append(name)

    def counts(self) -> dict[str, int]:
        return {kind: len(names) for kind, names in self.tensors.items()}


def int4_fits(shape: tuple[int, int]) -> bool:
    """The int4 kernel's shape limits: whole groups along K, blocks of 16 along N."""
    n, k = shape
    return k % GROUP == 0 and n % 16 == 0
