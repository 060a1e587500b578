"""A decoding step through every block as one call of our C++ kernels (cpu_decode.h): one sequence, or a
batch of sequences each at its own position (continuous batching).

At batch 1 on a small model the matmuls are not what takes the time: SmolLM2's 30 blocks ran about
40 torch operators each, Python between them, and a parallel region a matmul, and those took more
than the matmuls did. Here a step is one call; its threads meet at a barrier after each matmul.

It takes blocks of the Llama shape (pre-norms, a SiLU- or GELU-gated FFN; Q/K norms and Gemma's norms
on each sublayer's output where they are) whose projections are all on our kernels, with float32
caches; anything else (LoRA-wrapped projections, torch's kernels, attention being recorded) runs the
model's own forward, which gives the same results within float rounding.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor, nn

from backends.local import cpu_kernels
from backends.local.block_linear import BlockInt4Linear, BlockInt5Linear, BlockInt8Linear
from backends.local.quant_layers import ConcatLinear

i64, ptr = ctypes.c_int64, ctypes.c_void_p


class _Linear(ctypes.Structure):
    _fields_ = [("w", ptr), ("high", ptr), ("scale", ptr), ("mins", ptr), ("codes", ptr), ("supers", ptr), ("n", i64),
                ("k", i64), ("bits", i64)]


class _Projection(ctypes.Structure):
    _fields_ = [("part", _Linear * 3), ("parts", i64), ("bias", ptr)]


class _Layer(ctypes.Structure):
    _fields_ = [("qkv", _Projection), ("out", _Projection), ("gate_up", _Projection), ("down", _Projection),
                ("attention_norm", ptr), ("ffn_norm", ptr), ("q_norm", ptr), ("k_norm", ptr),
                ("post_attention_norm", ptr), ("post_ffn_norm", ptr), ("k_cache", ptr), ("v_cache", ptr),
                ("capacity", i64), ("window", i64), ("local_rope", i64)]


class _Model(ctypes.Structure):
    _fields_ = [("layers", i64), ("dim", i64), ("h", i64), ("hkv", i64), ("d", i64), ("rot", i64), ("ffn", i64),
                ("gelu", i64), ("eps", ctypes.c_float), ("scale", ctypes.c_float)]


def _parts(module: nn.Module) -> list[nn.Module] | None:
    """A projection's weights on our kernels (up to 3 side by side, their bias the projection's), or None."""
    concat = type(module) is ConcatLinear
    parts = list(module.parts) if concat else [module]
    kinds = (BlockInt4Linear, BlockInt5Linear, BlockInt8Linear)
    if len(parts) > 3 or any(type(p) not in kinds or (concat and p.bias is not None) for p in parts):
        return None
    return parts


def fits(model: nn.Module) -> bool:
    """Whether every block can run here: our kernels' projections, float32 weights, one RMSNorm epsilon (the caches
    are checked at each call, which reads them)."""
    eps, gelu = model.layers[0].attention_norm.eps, model.layers[0].feed_forward.gelu
    for block in model.layers:
        a, f = block.attention, block.feed_forward
        norms = [n for n in (block.attention_norm, block.ffn_norm, a.q_norm, a.k_norm, block.post_attention_norm,
                             block.post_ffn_norm) if n is not None]
        if (any(n.eps != eps for n in norms) or f.gelu != gelu or (a.q_norm is None) != (a.k_norm is None)
                or a.record or a.impl != "cpu" or any(_parts(p) is None for p in (a.wqkv, a.wo, f.w13, f.w2))):
            return False
    return model.dtype == torch.float32 and model.compiled_block is None


Modules = list[tuple[dict[str, nn.Module], dict[str, nn.Module]]]


def modules_of(model: nn.Module) -> Modules:
    """Each block's attention and feed-forward submodules, as the dictionaries that hold them (read each step)."""
    return [(block.attention._modules, block.feed_forward._modules) for block in model.layers]


def key_of(modules: Modules) -> tuple[int, ...]:
    """What a step's structures point at: each block's projections (a DecodeStep keeps them alive, so an id is not
    reused while it exists). The caches are read at each call: the batch scheduler swaps its own in and out."""
    return tuple(id(x) for a, f in modules for x in (a["wqkv"], a["wo"], f["w13"], f["w2"]))


class DecodeStep:
    """The blocks' weights and norms as the C++ step takes them, built once for a model's projections (an adapter
    needs a new one: see key_of)."""

    def __init__(self, model: nn.Module) -> None:
        c = model.config
        self.keep: list[object] = []  # what the structures point into, alive as long as they are
        self.layers = (_Layer * len(model.layers))()
        for layer, block in zip(self.layers, model.layers):
            a, f = block.attention, block.feed_forward
            self.keep += [a.wqkv, a.wo, f.w13, f.w2]
            for name, module in (("qkv", a.wqkv), ("out", a.wo), ("gate_up", f.w13), ("down", f.w2)):
                self._project(getattr(layer, name), module)
            for name, norm in (("attention_norm", block.attention_norm), ("ffn_norm", block.ffn_norm),
                               ("q_norm", a.q_norm), ("k_norm", a.k_norm),
                               ("post_attention_norm", block.post_attention_norm), ("post_ffn_norm", block.post_ffn_norm)):
                setattr(layer, name, None if norm is None else self._address(norm.weight))
            layer.window, layer.local_rope = a.window, int(block.sliding)
        first = model.layers[0].attention
        self.model = _Model(len(model.layers), c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.rotary_dim, c.ffn_dim,
                            int(model.layers[0].feed_forward.gelu), model.layers[0].attention_norm.eps,
                            first.scale or c.head_dim ** -0.5)
        h, hkv, d = c.n_heads, c.n_kv_heads, c.head_dim
        self.row_work = (h + 2 * hkv) * d + h * d + c.dim + 3 * c.ffn_dim  # floats of scratch a sequence
        self.work = torch.empty(0)
        self.rope = (ctypes.c_void_p * 4)()
        self.modules = model.block_modules

    def _address(self, t: Tensor) -> int:
        t = t.float().contiguous()
        self.keep.append(t)
        return t.data_ptr()

    def _project(self, out: _Projection, module: nn.Module) -> None:
        parts = _parts(module)
        bias = module.bias
        out.parts, out.bias = len(parts), None if bias is None else self._address(bias)
        for slot, p in zip(out.part, parts):
            slot.n, slot.k = p.out_features, p.in_features
            if type(p) is BlockInt8Linear:
                slot.w, slot.scale, slot.bits = p.q.data_ptr(), p.d.data_ptr(), 8
            else:
                address = cpu_kernels.address
                slot.w, slot.scale, slot.mins = p.nibbles.data_ptr(), address(p.scale), address(p.mins)
                slot.codes, slot.supers = address(getattr(p, "codes", None)), address(getattr(p, "supers", None))
                slot.high, slot.bits = (p.high.data_ptr(), 5) if type(p) is BlockInt5Linear else (None, 4)

    def __call__(self, x: Tensor, positions: Tensor, ropes: tuple[Tensor, ...]) -> Tensor:
        """x [M, 1, dim]: M sequences' tokens, sequence r at positions[r] with its keys and values in row r of the
        caches -> the last block's output [M, 1, dim]; ropes: cos, sin of the global layers, then of the
        sliding-window ones, rot values a sequence (as Transformer.rope gives them)."""
        rows = x.shape[0]
        out = x.reshape(rows, -1).to(torch.float32, copy=True)
        positions = positions.to(torch.int64).contiguous()
        last = int(positions.max())
        tables = [t.reshape(rows, -1).float().contiguous() for t in ropes]
        for i, t in enumerate(tables):
            self.rope[i] = t.data_ptr()
        for layer, (a, _) in zip(self.layers, self.modules):
            cache = a["cache"]._buffers
            k, v = cache["k"], cache["v"]
            if k.shape[0] < rows or k.shape[2] <= last or k.dtype != torch.float32 or not k.is_contiguous() \
                    or not v.is_contiguous():
                raise ValueError(f"the decoding step takes float32 caches of {rows} rows or more and over {last} positions, "
                                 f"not {k.dtype} {tuple(k.shape)}")
            layer.k_cache, layer.v_cache, layer.capacity = k.data_ptr(), v.data_ptr(), k.shape[2]
        if self.work.numel() < rows * self.row_work:
            self.work = torch.empty(rows * self.row_work)
        cpu_kernels.library().tt_decode_layers(ctypes.addressof(self.layers), ctypes.addressof(self.model), rows,
                                               out.data_ptr(), positions.data_ptr(), ctypes.addressof(self.rope),
                                               self.work.data_ptr(), torch.get_num_threads())
        return out.view(rows, 1, -1)
