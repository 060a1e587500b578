"""A decoding step of one sequence through every block as one call of our C++ kernels (cpu_decode.h).

At batch 1 on a small model the matmuls are not what takes the time: SmolLM2's 30 blocks ran about
40 torch operators each, Python between them, and a parallel region a matmul, and those took more
than the matmuls did. Here a step is one call; its threads meet at a barrier after each matmul.

It takes blocks of the Llama shape (pre-norms, a SiLU-gated FFN, no Q/K norms) whose projections are
all on our kernels, with a float32 cache of one sequence; anything else (LoRA-wrapped projections,
torch's kernels, Gemma's norms, attention being recorded) runs the model's own forward, which gives
the same results within float rounding.
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
    _fields_ = [("w", ptr), ("high", ptr), ("scale", ptr), ("mins", ptr), ("n", i64), ("k", i64), ("bits", i64)]


class _Projection(ctypes.Structure):
    _fields_ = [("part", _Linear * 3), ("parts", i64), ("bias", ptr)]


class _Layer(ctypes.Structure):
    _fields_ = [("qkv", _Projection), ("out", _Projection), ("gate_up", _Projection), ("down", _Projection),
                ("attention_norm", ptr), ("ffn_norm", ptr), ("k_cache", ptr), ("v_cache", ptr),
                ("capacity", i64), ("window", i64), ("local_rope", i64)]


class _Model(ctypes.Structure):
    _fields_ = [("layers", i64), ("dim", i64), ("h", i64), ("hkv", i64), ("d", i64), ("rot", i64), ("ffn", i64),
                ("eps", ctypes.c_float), ("scale", ctypes.c_float)]


def _parts(module: nn.Module) -> list[nn.Module] | None:
    parts = list(module.parts) if type(module) is ConcatLinear else [module]
    kinds = (BlockInt4Linear, BlockInt5Linear, BlockInt8Linear)
    return parts if len(parts) <= 3 and all(type(p) in kinds for p in parts) else None


def fits(model: nn.Module) -> bool:
    """Whether every block can run here: our kernels' projections, Llama's shape, float32 caches of one sequence."""
    for block in model.layers:
        a, f = block.attention, block.feed_forward
        if (a.q_norm is not None or block.post_attention_norm is not None or block.post_ffn_norm is not None
                or f.gelu or a.record or a.impl != "cpu" or a.cache is None or a.cache.k.shape[0] != 1
                or a.cache.k.dtype != torch.float32 or any(_parts(p) is None for p in (a.wqkv, a.wo, f.w13, f.w2))):
            return False
    return model.dtype == torch.float32 and model.compiled_block is None


Modules = list[tuple[dict[str, nn.Module], dict[str, nn.Module]]]


def modules_of(model: nn.Module) -> Modules:
    """Each block's attention and feed-forward submodules, as the dictionaries that hold them (read each step)."""
    return [(block.attention._modules, block.feed_forward._modules) for block in model.layers]


def key_of(modules: Modules) -> tuple[int, ...]:
    """What a step points at: each block's projections and cache tensors (a DecodeStep keeps them alive, so an
    id is not reused while it exists). About 20 us a step for 30 blocks."""
    return tuple(id(x) for a, f in modules for x in (a["wqkv"], a["wo"], f["w13"], f["w2"], a["cache"]._buffers["k"],
                                                     a["cache"]._buffers["v"]))


class DecodeStep:
    """The blocks' weights, norms and caches as the C++ step takes them, built once for a model's modules and
    caches: a new cache (a longer request, a beam search) or an adapter needs a new one (see key_of)."""

    def __init__(self, model: nn.Module) -> None:
        c = model.config
        self.keep: list[object] = []  # what the structures point into, alive as long as they are
        self.layers = (_Layer * len(model.layers))()
        for layer, block in zip(self.layers, model.layers):
            a, f = block.attention, block.feed_forward
            self.keep += [a.wqkv, a.wo, f.w13, f.w2, a.cache.k, a.cache.v]
            for name, module in (("qkv", a.wqkv), ("out", a.wo), ("gate_up", f.w13), ("down", f.w2)):
                self._project(getattr(layer, name), module)
            layer.attention_norm = self._address(block.attention_norm.weight)
            layer.ffn_norm = self._address(block.ffn_norm.weight)
            layer.k_cache, layer.v_cache = a.cache.k.data_ptr(), a.cache.v.data_ptr()
            layer.capacity, layer.window, layer.local_rope = a.cache.k.shape[2], a.window, int(block.sliding)
        first = model.layers[0].attention
        self.model = _Model(len(model.layers), c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.rotary_dim, c.ffn_dim,
                            model.layers[0].attention_norm.eps, first.scale or c.head_dim ** -0.5)
        h, hkv, d = c.n_heads, c.n_kv_heads, c.head_dim
        self.work = torch.empty((h + 2 * hkv) * d + h * d + c.dim + 3 * c.ffn_dim)
        self.rope = (ctypes.c_void_p * 4)()

    def _address(self, t: Tensor) -> int:
        t = t.float().contiguous()
        self.keep.append(t)
        return t.data_ptr()

    def _project(self, out: _Projection, module: nn.Module) -> None:
        parts = _parts(module)
        biases = [p.bias for p in parts if p.bias is not None]
        bias = module.bias if type(module) is ConcatLinear else (biases[0] if biases else None)
        if type(module) is ConcatLinear and biases:
            raise ValueError("side-by-side projections carry one bias, not one a part")
        out.parts, out.bias = len(parts), None if bias is None else self._address(bias)
        for slot, p in zip(out.part, parts):
            slot.n, slot.k = p.out_features, p.in_features
            if type(p) is BlockInt8Linear:
                slot.w, slot.scale, slot.bits = p.q.data_ptr(), p.d.data_ptr(), 8
            else:
                slot.w, slot.scale, slot.mins = p.nibbles.data_ptr(), p.scale.data_ptr(), p.mins.data_ptr()
                slot.high, slot.bits = (p.high.data_ptr(), 5) if type(p) is BlockInt5Linear else (None, 4)

    def __call__(self, x: Tensor, position: int, ropes: tuple[Tensor, ...]) -> Tensor:
        """x [1, 1, dim] at `position` -> the last block's output [1, 1, dim]; ropes: cos, sin [1, 1, rot] of the
        global layers, then of the sliding-window ones (as Transformer.rope gives them)."""
        out = x.reshape(-1).to(torch.float32, copy=True)
        tables = [t.reshape(-1).float().contiguous() for t in ropes]
        for i, t in enumerate(tables):
            self.rope[i] = t.data_ptr()
        lib = cpu_kernels.library()
        lib.tt_decode_layers(ctypes.addressof(self.layers), ctypes.addressof(self.model), out.data_ptr(), position,
                             ctypes.addressof(self.rope), self.work.data_ptr(), torch.get_num_threads())
        return out.view(1, 1, -1)
