"""Linear layers on our CPU kernels (cpu_kernels.py): weights in blocks of 32 with float16 scales.

- `BlockInt4Linear`: int4 groups (Q4_0, Q4_1, Q4_K), w = q * scale + min per group of 32. Q4_0 and
  Q4_1 are exact; Q4_K's scale products (d * sc, dmin * m) round to float16 (relative 2^-11,
  where torch's int4 kernel takes bfloat16, 2^-8).
- `BlockInt5Linear`: int5 groups, w = q * scale + min, q in 0..31: Q5_0 and Q5_1 as the file holds
  them (a byte copy of each block's nibbles and fifth bits), 0.75 bytes a value where int8 takes 1.06.
- `BlockInt8Linear`: int8 blocks, w = q * d per block of 32. Q8_0 keeps the file's own values and
  block scales exactly; other types (Q6_K, Q5_K, ...) are requantized per block of 32.
Activations are quantized per block of 32 on the way in, into two int8 parts (cpu_kernels.py);
every row is computed alone, so a row's output does not depend on the others in the batch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from gguf import GGMLQuantizationType as QT
from torch import Tensor, nn

from backends.local import cpu_kernels

BLOCK = cpu_kernels.BLOCK


@dataclass
class Int8Blocks:
    """w[n, k] = q[n, k] * d[n, k // 32]."""

    q: Tensor  # int8 [N, K]
    d: Tensor  # float16 [N, K / 32]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.q.shape)  # type: ignore[return-value]

    def dequantize(self) -> Tensor:
        n, k = self.q.shape
        return (self.q.float().view(n, -1, BLOCK) * self.d.float()[..., None]).view(n, k)


def int8_blocks(w: Tensor) -> Int8Blocks:
    """Symmetric int8 per block of 32 of a float matrix [N, K]."""
    n, k = w.shape
    blocks = w.float().reshape(n, k // BLOCK, BLOCK)
    d = (blocks.abs().amax(-1) / 127).half()
    safe = torch.where(d > 0, d.float(), torch.ones(()))
    q = (blocks / safe[..., None]).round_().clamp_(-127, 127).to(torch.int8)
    return Int8Blocks(q.view(n, k), d)


def int8_blocks_from_values(q: Tensor, d: Tensor) -> Int8Blocks:
    """Block values (q [N, B, 32] in -128..127, d float16 [N, B, 1]) taken as they are: no rounding."""
    n = q.shape[0]
    return Int8Blocks(q.to(torch.int8).reshape(n, -1), d.reshape(n, -1).to(torch.float16))


@dataclass
class Int5Blocks:
    """w[n, 32g + i] = q * scale[n, g] + mins[n, g], q in 0..31: its low four bits in nibbles (byte i of a
    group's 16 holds value i low, value i + 16 high), its fifth in bit i of the group's 4 bytes of high."""

    nibbles: Tensor  # uint8 [N, K / 2]
    high: Tensor  # uint8 [N, K / 8]
    scale: Tensor  # float16 [N, K / 32]
    mins: Tensor  # float16 [N, K / 32]

    @property
    def shape(self) -> tuple[int, int]:
        return self.nibbles.shape[0], self.nibbles.shape[1] * 2

    def values(self) -> Tensor:
        """q as uint8 [N, K / 32, 32]."""
        n = self.shape[0]
        groups = self.nibbles.view(n, -1, 16)
        low = torch.cat([groups & 0x0F, groups >> 4], dim=-1)
        bits = self.high.view(n, -1, 4, 1) >> torch.arange(8, dtype=torch.uint8) & 1
        return low | (bits.reshape(n, -1, 32) << 4)

    def dequantize(self) -> Tensor:
        n, k = self.shape
        return (self.values().float() * self.scale.float()[..., None] + self.mins.float()[..., None]).view(n, k)


INT5_TYPES = {QT.Q5_0: 22, QT.Q5_1: 24}  # bytes a block: float16 d (and m), 4 bytes of fifth bits, 16 of nibbles


def int5_from_gguf(raw: np.ndarray, qtype: QT) -> Int5Blocks:
    """Q5_0 (w = d * (q - 16)) or Q5_1 (w = d * q + m) rows, raw bytes [N, row bytes], copied block part
    by block part into the kernel's buffers: nothing rounds, no float copy is made."""
    size = INT5_TYPES[qtype]
    n, groups = raw.shape[0], raw.shape[1] // size
    with warnings.catch_warnings():  # a read-only map: only the copies below read it
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        blocks = torch.from_numpy(np.ascontiguousarray(raw)).view(n, groups, size)
    offset = 4 if qtype == QT.Q5_1 else 2
    out = Int5Blocks(torch.empty(n, groups * 16, dtype=torch.uint8), torch.empty(n, groups * 4, dtype=torch.uint8),
                     torch.empty(n, groups, dtype=torch.float16), torch.empty(n, groups, dtype=torch.float16))
    out.nibbles.view(n, groups, 16).copy_(blocks[..., offset + 4 :])
    out.high.view(n, groups, 4).copy_(blocks[..., offset : offset + 4])
    out.scale.view(torch.uint8).view(n, groups, 2).copy_(blocks[..., 0:2])
    if qtype == QT.Q5_1:
        out.mins.view(torch.uint8).view(n, groups, 2).copy_(blocks[..., 2:4])
    else:
        torch.mul(out.scale, -16, out=out.mins)  # exact: a power of two
    return out


def _norm(norm: nn.Module | None) -> tuple[Tensor | None, float]:
    """An RMSNorm's (weight, eps) for the kernels to apply on the way in, or nothing."""
    return (None, 0.0) if norm is None else (norm.weight.float().contiguous(), float(norm.eps))


def fits(shape: tuple[int, ...]) -> bool:
    """Whether our kernels take a weight of this shape: whole blocks along K (any number of rows)."""
    return len(shape) == 2 and shape[1] % BLOCK == 0


class _BlockLinear(nn.Module):
    """A layer on our kernels: float32 rows in and out, its bias added after."""

    takes_norm = True  # forward(x, norm) is forward(norm(x)), the norm applied as x is quantized
    in_features: int
    out_features: int
    bias: Tensor | None

    def matmul(self, flat: Tensor, norm: Tensor | None, eps: float, compiling: bool) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, norm: nn.Module | None = None) -> Tensor:
        flat = x.reshape(-1, self.in_features).float().contiguous()
        y = self.matmul(flat, *_norm(norm), torch.compiler.is_compiling()).view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class BlockInt4Linear(_BlockLinear):
    def __init__(self, nibbles: Tensor, scale: Tensor, zero: Tensor, bias: Tensor | None, codes: Tensor | None = None,
                 supers: Tensor | None = None) -> None:
        """From quant.Int4Weight's parts: w = (q - 8) * scale + zero. Takes the nibbles over (each group's in the
        kernels' order already): they are put in the kernels' tiles of rows in place, not copied. With Q4_K's own
        scales (quant.Int4KWeight's codes and supers), the kernels read those instead of float16 scale and mins."""
        super().__init__()
        n, half = nibbles.shape
        self.out_features, self.in_features = n, half * 2
        self.register_buffer("nibbles", cpu_kernels.tile_(nibbles.contiguous(), 16))
        coded = codes is not None and supers is not None
        self.register_buffer("scale", None if coded else scale.to(torch.float16).contiguous())
        self.register_buffer("mins", None if coded else (zero.float() - 8 * scale.float()).to(torch.float16).contiguous())
        self.register_buffer("codes", codes.contiguous() if coded else None)
        self.register_buffer("supers", supers.to(torch.float16).contiguous() if coded else None)
        self.bias = bias

    def matmul(self, flat: Tensor, norm: Tensor | None, eps: float, compiling: bool) -> Tensor:
        op = cpu_kernels.int4_matmul_op if compiling else cpu_kernels.int4_matmul
        return op(self.nibbles, self.scale, self.mins, flat, None, norm, eps, self.codes, self.supers)


class BlockInt5Linear(_BlockLinear):
    def __init__(self, weight: Int5Blocks, bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("nibbles", cpu_kernels.tile_(weight.nibbles.contiguous(), 16))
        self.register_buffer("high", cpu_kernels.tile_(weight.high.contiguous(), 4))
        for name in ("scale", "mins"):
            self.register_buffer(name, getattr(weight, name).contiguous())
        self.bias = bias

    def matmul(self, flat: Tensor, norm: Tensor | None, eps: float, compiling: bool) -> Tensor:
        op = cpu_kernels.int4_matmul_op if compiling else cpu_kernels.int4_matmul
        return op(self.nibbles, self.scale, self.mins, flat, self.high, norm, eps)


class BlockInt8Linear(_BlockLinear):
    def __init__(self, weight: Int8Blocks, bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("q", cpu_kernels.tile_(weight.q.contiguous(), BLOCK))
        self.register_buffer("d", weight.d.contiguous())
        self.bias = bias

    def matmul(self, flat: Tensor, norm: Tensor | None, eps: float, compiling: bool) -> Tensor:
        op = cpu_kernels.int8_matmul_op if compiling else cpu_kernels.int8_matmul
        return op(self.q, self.d, flat, norm, eps)

    def rows(self, ids: Tensor) -> Tensor:
        """Dequantized rows: the token embedding when this is also the (tied) output head."""
        flat = ids.reshape(-1)
        rows = Int8Blocks(cpu_kernels.tiled_rows(self.q, flat, BLOCK), self.d[flat])
        return rows.dequantize().view(*ids.shape, self.in_features)
