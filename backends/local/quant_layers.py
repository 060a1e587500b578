"""The layers that run weights in memory: torch's int4 and int8 kernels (quant.py says when), dense float,
the output head that ranks then refines, projections of mixed kinds side by side, and embedding rows
read from the file. `linear` picks the layer for a weight; our own kernels' layers are in block_linear.py.
torch's layers take activations of any float type and return the kernel's bfloat16 output as it is:
the next op (a residual add, RoPE, the cache write) promotes it for free."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as QT
from torch import Tensor, nn

from backends.local.block_linear import BlockInt4Linear, BlockInt5Linear, BlockInt8Linear, Int5Blocks, Int8Blocks, fits
from backends.local.quant import (
    GROUP,
    Int4KWeight,
    Int4Weight,
    Int8Weight,
    Weight,
    concat,
    dequantize_rows,
    int4_fits,
    int4_kernel_is_fast,
    int8_from_int4,
    kind_of,
    ours,
)


class Int4Linear(nn.Module):
    def __init__(self, weight: Int4Weight, bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        n, chunk = self.out_features, 1024  # rows per conversion: bounds the int32 copy; a multiple of the kernel's blocks
        self.register_buffer("packed", torch.empty(n, self.in_features // 2, dtype=torch.uint8))
        for i in range(0, n, chunk):
            self.packed[i : i + chunk] = torch.ops.aten._convert_weight_to_int4pack_for_cpu(weight.values(i, i + chunk).int(), 1)
        scales_and_zeros = torch.stack([weight.scale.T, weight.zero.T], dim=-1).to(torch.bfloat16).contiguous()
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.bias = bias

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, GROUP, self.scales_and_zeros)
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class Int8Linear(nn.Module):
    def __init__(self, weight: Int8Weight, bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("q", weight.q.contiguous())
        self.register_buffer("scale", weight.scale.float())
        self.register_buffer("scale_bf16", weight.scale.to(torch.bfloat16))
        self.bias = bias

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch._weight_int8pack_mm(flat, self.q, self.scale_bf16)
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def rows(self, ids: Tensor) -> Tensor:
        """Dequantized rows: the token embedding when this is also the (tied) output head."""
        return self.q[ids].float() * self.scale[ids].unsqueeze(-1)


def top_indices(y: Tensor, k: int, width: int = 32) -> Tensor:
    """The indices of the k largest of y's last dimension (in no order), as topk's but 2-4x faster on a
    vocabulary (torch.topk over Qwen's 151,936 logits takes 0.26 ms): the k blocks of `width` with the highest
    maxima hold the k largest values, since a value outside them is beaten by those k maxima."""
    n = y.shape[-1]
    if n <= k * width:
        return y.topk(k, dim=-1).indices
    padded = nn.functional.pad(y, (0, -n % width), value=float("-inf")).view(*y.shape[:-1], -1, width)
    blocks = padded.amax(-1).topk(k, dim=-1).indices
    values = padded.gather(-2, blocks[..., None].expand(*blocks.shape, width)).flatten(-2)
    best = values.topk(k, dim=-1).indices
    return blocks.gather(-1, best // width) * width + best % width


class OutputHead(nn.Module):
    """The vocabulary projection: a fast quantized matmul ranks, then the top candidates in float32.

    The kernels round their output to bfloat16 (a logit near 15 is off by up to 0.03), and
    int8 rows or int4 groups are coarser than a file's Q8_0 or Q6_K blocks: enough to swap
    the greedy choice between close candidates. The k best are recomputed from `rows`, the
    file's own values where there is a file. On SmolLM2 an int4 ranking with k = 64 keeps
    99.2% top-1 agreement with exact mode and perplexity within 0.7% (k = 32: 1.2%), at half
    the int8 head's bytes and time.
    """

    def __init__(self, matmul: nn.Module, rows: nn.Module | None = None, k: int = 64) -> None:
        super().__init__()
        self.matmul, self.k = matmul, k
        self.exact_rows = rows

    def rows(self, ids: Tensor) -> Tensor:
        return self.matmul.rows(ids) if self.exact_rows is None else self.exact_rows(ids).float()

    def forward(self, x: Tensor) -> Tensor:
        y = self.matmul(x).float()
        top = top_indices(y, min(self.k, y.shape[-1]))
        exact = (self.rows(top) @ x.float().unsqueeze(-1)).squeeze(-1)
        return y.scatter(-1, top, exact)


class DenseLinear(nn.Module):
    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


def linear(weight: Weight, bias: Tensor | None = None) -> nn.Module:
    if isinstance(weight, Int4Weight):
        if ours() and fits(weight.shape):
            codes = (weight.codes, weight.supers) if isinstance(weight, Int4KWeight) else ()  # whole blocks of 256
            return BlockInt4Linear(weight.nibbles, weight.scale, weight.zero, bias, *codes)
        if int4_fits(weight.shape) and int4_kernel_is_fast():
            return Int4Linear(weight, bias)
        weight = int8_from_int4(weight)
    if isinstance(weight, Int8Blocks):
        return BlockInt8Linear(weight, bias)
    if isinstance(weight, Int5Blocks):
        return BlockInt5Linear(weight, bias)
    if isinstance(weight, Int8Weight):
        return Int8Linear(weight, bias)
    return DenseLinear(weight, bias)


class ConcatLinear(nn.Module):
    """Projections of different kinds side by side (a Q4_K_M file's Q4_K query beside a Q6_K value)."""

    def __init__(self, parts: list[nn.Module], bias: Tensor | None) -> None:
        super().__init__()
        self.parts, self.bias = nn.ModuleList(parts), bias
        self.takes_norm = all(getattr(part, "takes_norm", False) for part in parts)

    def forward(self, x: Tensor, norm: nn.Module | None = None) -> Tensor:
        y = torch.cat([(part(x) if norm is None else part(x, norm)).float() for part in self.parts], dim=-1)
        return y if self.bias is None else y + self.bias


def fused_linear(weights: list[Weight], bias: Tensor | None = None) -> nn.Module:
    """One layer for several projections (Q/K/V, gate/up): one matmul for each run of neighbours of one kind
    (a Q5_0 query and key beside a Q8_0 value: two)."""
    runs = [list(run) for _, run in itertools.groupby(weights, key=kind_of)]
    if len(runs) == 1:
        return linear(concat(weights), bias)
    return ConcatLinear([linear(concat(run)) for run in runs], bias)


class GGUFRows(nn.Module):
    """Token embeddings kept as the file's blocks; only the rows looked up are dequantized."""

    def __init__(self, raw: np.ndarray, qtype: QT, tensor_name: str = "") -> None:
        """raw: uint8 [rows, row bytes], kept as it is (a view of the memory-mapped file is not copied);
        tensor_name: the file's name for it, by which a cached model finds its rows in the file again."""
        super().__init__()
        self.tensor_name = tensor_name
        with warnings.catch_warnings():  # a read-only map: nothing writes to these rows
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            self.register_buffer("raw", torch.from_numpy(raw))
        self.qtype = qtype
        block, type_size = GGML_QUANT_SIZES[qtype]
        self.shape = (raw.shape[0], raw.shape[1] // type_size * block)

    def forward(self, ids: Tensor) -> Tensor:
        rows = self.raw[ids.reshape(-1)].numpy()
        return dequantize_rows(rows, self.qtype).view(*ids.shape, -1)
