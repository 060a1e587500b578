"""The Transformer: RMSNorm, RoPE, grouped-query attention, a gated FFN, a preallocated KV cache.

The families differ only in what the config says (QKV bias, tied embeddings, Q/K norms,
norms around each sublayer, GELU, sliding-window layers with their own RoPE base, an
embedding scale, logit soft-capping), so one model serves them all.
Q/K/V and gate/up projections are fused at load time: fewer, larger matmuls per step. The
linear layers come from `quant_layers.linear`: dense float, or weights that stay quantized.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backends.local import cpu_kernels
from backends.local.attention import attention, last_row_weights, rows_attention
from backends.local.block_linear import BlockInt4Linear, BlockInt8Linear, Int8Blocks
from backends.local.config import ModelConfig, ModelLoadError
from backends.local.cpu_decode import DecodeStep, fits, key_of, modules_of
from backends.local.prefix_cache import PrefixSnapshots, common_prefix
from backends.local.quant import Deferred, Int8Weight, Weight, as_float, made
from backends.local.quant_layers import DenseLinear, Int4Linear, Int8Linear, OutputHead, fused_linear, linear

PREFIX_CACHE_BYTES = 64 * 2**20  # earlier prompts' K/V kept for reuse (SmolLM2: about 1,400 tokens)
# Prompts are computed in chunks of this many tokens at fixed absolute positions, and only whole
# chunks are reused. A row's keys and values depend on the shape of the forward that made it (one
# float32 ulp in attention flips a bfloat16 rounding, and 24 layers on it moves a logit by 0.5);
# on the grid, a chunk is always made by the same forward, so a reused prompt samples the same
# tokens as a cold one. 64 costs 2-5% of prefill speed in fast precision (see docs/engine.md).
PREFILL_CHUNK = 64


@dataclass(frozen=True)
class Rows:
    """Where each row of a batched forward goes: the position of its first token (a row of T tokens fills
    positions..positions+T-1), and how many cache positions to read (past every row's last position; a
    fixed grid, so a row's attention does not depend on the others). slots: the cache rows, when not
    0..B-1; last: per row, the token whose logits come back (a batch of prompt chunks of several lengths)."""

    positions: Tensor
    length: int
    slots: Tensor | None = None
    last: Tensor | None = None

    def grid(self, tokens: int) -> Tensor:
        """[B, tokens]: each row's positions."""
        return self.positions[:, None] + torch.arange(tokens, device=self.positions.device)


def rope_inv_freq(config: ModelConfig, freq_factors: Tensor | None = None, theta: float = 0.0) -> Tensor:
    dim = config.rotary_dim
    inv_freq = 1.0 / ((theta or config.rope_theta) ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if freq_factors is not None:  # per-frequency divisors: GGUF's rope_freqs (Llama 3), Phi-3's short factors
        return inv_freq / freq_factors.float()
    if theta:  # a sliding-window layer's own base, unscaled
        return inv_freq
    if config.rope_linear_factor != 1.0:
        return inv_freq / config.rope_linear_factor
    s = config.rope_scaling
    if s is None:
        return inv_freq
    low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


class RMSNorm(nn.Module):
    def __init__(self, weight: Tensor, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:  # written out: F.rms_norm is slower at batch 1 on CPU
        if x.dtype != torch.float32:
            x32 = x.float()
            return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def project(layer: nn.Module, norm: RMSNorm | None, x: Tensor) -> Tensor:
    """layer(norm(x)); our kernels' layers normalize x as they quantize it (one call, not six ops)."""
    if norm is None:
        return layer(x)
    return layer(x, norm) if getattr(layer, "takes_norm", False) else layer(norm(x))


class KVCache(nn.Module):
    def __init__(self, batch: int, n_kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        super().__init__()
        shape = (batch, n_kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def repeat(self, batch: int) -> None:
        """Copies row 0 into `batch` rows (beam search after a shared prefill)."""
        self.k = self.k[:1].repeat(batch, 1, 1, 1)
        self.v = self.v[:1].repeat(batch, 1, 1, 1)

    def update_rows(self, rows: Rows, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Batched forward: row b's new keys and values [Hkv, T, D] go to its slot at its positions; the rows'
        keys and values up to rows.length come back."""
        count, tokens = k.shape[0], k.shape[2]
        slots = torch.arange(count, device=k.device) if rows.slots is None else rows.slots
        where = (slots[:, None], slice(None), rows.grid(tokens))
        self.k[where] = k.transpose(1, 2).to(self.k.dtype)
        self.v[where] = v.transpose(1, 2).to(self.v.dtype)
        if rows.slots is None:
            return self.k[:count, :, : rows.length], self.v[:count, :, : rows.length]
        return self.k[slots, :, : rows.length], self.v[slots, :, : rows.length]

    def update(self, start: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE in Hugging Face's layout (halves), on the leading cos.shape[-1] dimensions of each head."""
    r = cos.shape[-1]
    if r < x.shape[-1]:
        return torch.cat((rotate(x[..., :r], cos, sin), x[..., r:]), dim=-1)
    return x * cos + torch.cat((-x[..., r // 2 :], x[..., : r // 2]), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, c: ModelConfig, wqkv: nn.Module, wo: nn.Module, qk_norms: tuple[RMSNorm, RMSNorm] | None,
                 window: int) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = c.n_heads, c.n_kv_heads, c.head_dim
        self.wqkv, self.wo = wqkv, wo
        self.q_norm, self.k_norm = qk_norms or (None, None)
        self.scale, self.window = c.attn_scale or None, window
        self.cache: KVCache | None = None
        self.impl = "torch"  # attention implementation, see attention.choose
        self.record = False  # keep the last row's attention weights in `looked` (see Transformer.record_attention)
        self.looked: Tensor | None = None

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, start: int | Rows, norm: RMSNorm | None = None) -> Tensor:
        """x: the residual stream, normalized by `norm` first."""
        b, t, _ = x.shape
        h, hkv, d = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = project(self.wqkv, norm, x).view(b, t, h + 2 * hkv, d)
        qk = qkv[:, :, : h + hkv]
        if self.q_norm is not None:
            qk = torch.cat((self.q_norm(qk[:, :, :h]), self.k_norm(qk[:, :, h:])), dim=2)
        if self.impl == "cpu" and b == t == 1 and isinstance(start, int) and not self.record and self.cache is not None \
                and self.cache.k.dtype == torch.float32 and not torch.compiler.is_compiling():  # one sequence decoding
            heads = torch.cat((qk, qkv[:, :, h + hkv :]), dim=2) if self.q_norm is not None else qkv
            out = cpu_kernels.attend_one(heads[0, 0].float().contiguous(), self.cache.k[0], self.cache.v[0], start,
                                         cos.reshape(-1), sin.reshape(-1), self.scale, self.window)
            return self.wo(out.view(1, 1, h * d))
        qk = rotate(qk, cos, sin)  # RoPE on the query and key heads at once
        q, k = qk[:, :, :h].transpose(1, 2), qk[:, :, h:].transpose(1, 2)
        v = qkv[:, :, h + hkv :].transpose(1, 2)
        if isinstance(start, Rows):  # batched: each row at its own positions
            k, v = self.cache.update_rows(start, k, v)
            out = rows_attention(q, k, v, start.positions, impl=self.impl, scale=self.scale, window=self.window)
            return self.wo(out.transpose(1, 2).reshape(b, t, h * d))
        if self.cache is not None:
            k, v = self.cache.update(start, k, v)  # the cache's dtype: a bfloat16 v is promoted here
        else:
            v = v.to(q.dtype)
        if self.record:
            self.looked = last_row_weights(q, k, self.scale, self.window)
        out = attention(q, k, v, impl=self.impl, scale=self.scale, window=self.window)
        return self.wo(out.transpose(1, 2).reshape(b, t, h * d))


class FeedForward(nn.Module):
    def __init__(self, ffn_dim: int, w13: nn.Module, w2: nn.Module, activation: str = "silu") -> None:
        super().__init__()
        self.ffn_dim = ffn_dim
        self.w13, self.w2 = w13, w2  # gate and up, fused; down
        self.gelu = activation == "gelu_tanh"

    def forward(self, x: Tensor, norm: RMSNorm | None = None) -> Tensor:
        gate, up = project(self.w13, norm, x).split(self.ffn_dim, dim=-1)
        return self.w2((F.gelu(gate, approximate="tanh") if self.gelu else F.silu(gate)) * up)


def _take(weights: dict[str, Weight | Deferred], name: str, dtype: torch.dtype) -> Weight:
    t = made(weights.pop(name))
    return t.to(dtype) if isinstance(t, Tensor) and t.is_floating_point() else t


class Block(nn.Module):
    """Pre-norm attention and FFN; with `sandwich_norms` (Gemma) each output is normed before the residual add.

    Hugging Face names the pre-FFN norm `post_attention_layernorm` in Llama and `pre_feedforward_layernorm`
    in Gemma, where `post_attention_layernorm` is the norm on the attention's output."""

    def __init__(self, c: ModelConfig, w: dict[str, Weight | Deferred], index: int, dtype: torch.dtype) -> None:
        super().__init__()
        prefix = f"model.layers.{index}."
        take = lambda name: _take(w, prefix + name, dtype)  # noqa: E731
        norm = lambda name: RMSNorm(as_float(take(name + ".weight"), dtype), c.norm_eps)  # noqa: E731
        bias = torch.cat([take(f"self_attn.{x}_proj.bias") for x in "qkv"]) if c.qkv_bias else None
        qk_norms = (norm("self_attn.q_norm"), norm("self_attn.k_norm")) if c.qk_norm else None
        self.sliding = bool(c.sliding_layers and c.sliding_layers[index])
        self.attention_norm = norm("input_layernorm")
        self.attention = Attention(
            c, fused_linear([take(f"self_attn.{x}_proj.weight") for x in "qkv"], bias), linear(take("self_attn.o_proj.weight")),
            qk_norms, c.sliding_window if self.sliding else 0,
        )
        sandwich = c.sandwich_norms
        self.post_attention_norm = norm("post_attention_layernorm") if sandwich else None
        self.ffn_norm = norm("pre_feedforward_layernorm" if sandwich else "post_attention_layernorm")
        self.post_ffn_norm = norm("post_feedforward_layernorm") if sandwich else None
        self.feed_forward = FeedForward(
            c.ffn_dim, fused_linear([take("mlp.gate_proj.weight"), take("mlp.up_proj.weight")]),
            linear(take("mlp.down_proj.weight")), c.activation,
        )

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, start: int | Rows) -> Tensor:
        a = self.attention(x, cos, sin, start, self.attention_norm)
        h = x + (a if self.post_attention_norm is None else self.post_attention_norm(a))
        f = self.feed_forward(h, self.ffn_norm)
        return h + (f if self.post_ffn_norm is None else self.post_ffn_norm(f))


def run_block(layer: Block, x: Tensor, cos: Tensor, sin: Tensor, start: int) -> Tensor:
    return layer(x, cos, sin, start)


class Transformer(nn.Module):
    """Built from Hugging Face-named weights: float tensors, or quantized weights (see quant.py).

    In fast mode `<name>.rows` may give the file's blocks of the embedding or head, looked up
    row by row (token embeddings, the head's top candidates).
    """

    def __init__(self, config: ModelConfig, weights: dict[str, Weight | Deferred], dtype: torch.dtype = torch.float32) -> None:
        """Consumes `weights`: each is removed as the layer that holds it is built."""
        super().__init__()
        self.config, self.dtype = config, dtype
        w = weights
        tied = config.tie_embeddings or "lm_head.weight" not in w
        try:  # layer by layer, each weight dropped from `weights` once it has its final form
            self.layers = nn.ModuleList(Block(config, w, i, dtype) for i in range(config.n_layers))
            embedding = _take(w, "model.embed_tokens.weight", dtype)
            self.output = linear(embedding if tied else _take(w, "lm_head.weight", dtype))
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"weights do not fit the model: {exc}") from exc
        rows = w.get("model.embed_tokens.rows" if tied else "lm_head.rows")
        if isinstance(self.output, (Int8Linear, BlockInt8Linear)) or (
                rows is not None and isinstance(self.output, (Int4Linear, BlockInt4Linear))):
            self.output = OutputHead(self.output, rows)
        self.norm = RMSNorm(as_float(_take(w, "model.norm.weight", dtype), dtype), config.norm_eps)
        self.tok_embeddings = self._lookup(w.get("model.embed_tokens.rows", embedding), tied)
        freq_factors = made(w.pop("rope_freqs")) if "rope_freqs" in w else None
        self.register_buffer("inv_freq", rope_inv_freq(config, freq_factors), persistent=False)
        local = rope_inv_freq(config, theta=config.rope_local_theta) if config.rope_local_theta else self.inv_freq
        self.register_buffer("inv_freq_local", local, persistent=False)
        self.rope_cache: tuple[Tensor, ...] | None = None  # cos, sin [positions, 1, rotary_dim]; then the sliding layers'
        self.embed_scale = config.embed_scale
        self.max_cache_len = 0
        self.compiled_block: Callable[..., Tensor] | None = None  # see compile_decode
        self.decode_step: DecodeStep | None = None  # see _decode_step
        self.decode_key: tuple[int, ...] = ()
        self.block_modules = modules_of(self)
        self.cached: list[int] = []  # the tokens whose keys and values row 0 of the cache holds, as whole prefill chunks
        self.snapshots = PrefixSnapshots(PREFIX_CACHE_BYTES)

    def _lookup(self, table: Weight | nn.Module, tied: bool) -> nn.Module:
        """The module that embeds token ids: file blocks, int8 rows, or a float table, shared with a tied head."""
        if isinstance(table, nn.Module):
            return table
        if isinstance(table, (Int8Weight, Int8Blocks)):
            return self.output.matmul if tied and isinstance(self.output, OutputHead) else linear(table)
        if tied and isinstance(self.output, DenseLinear):
            return self.output
        return DenseLinear(as_float(table, self.dtype), None)

    @property
    def device(self) -> torch.device:
        return self.inv_freq.device

    def embed(self, ids: Tensor) -> Tensor:
        table = self.tok_embeddings
        if isinstance(table, DenseLinear):
            x = F.embedding(ids, table.weight)
        elif isinstance(table, (Int8Linear, BlockInt8Linear)):
            x = table.rows(ids).to(self.dtype)
        else:
            x = table(ids).to(self.dtype)  # GGUFRows
        return x if self.embed_scale == 1.0 else x * torch.tensor(self.embed_scale, dtype=self.dtype)

    def setup_cache(self, batch: int, max_len: int) -> None:
        """Preallocates each layer's K/V for `max_len` positions; a bigger cache keeps row 0's contents."""
        max_len = min(max_len, self.config.context_length)
        first = self.layers[0].attention.cache
        if first is not None and self.max_cache_len >= max_len and first.k.shape[0] == batch:
            return
        if batch != 1 or first is None or first.k.shape[0] != 1:
            self.cached = []
        c, keep = self.config, len(self.cached)
        size = max(max_len, self.max_cache_len) if batch == 1 else max_len
        for layer in self.layers:
            old = layer.attention.cache
            layer.attention.cache = KVCache(batch, c.n_kv_heads, size, c.head_dim, self.dtype, self.device)
            if keep:
                layer.attention.cache.update(0, old.k[:1, :, :keep], old.v[:1, :, :keep])
        self.max_cache_len = size

    def reusable_prefix(self, ids: Sequence[int]) -> int:
        """How many leading tokens of `ids` row 0 of the cache holds in whole prefill chunks (never the last
        token), after bringing back an earlier prompt's keys and values when they share more (see prefix_cache.py)."""
        whole = lambda n: n - n % PREFILL_CHUNK  # noqa: E731
        held = whole(common_prefix(self.cached, ids))
        found = self.snapshots.best(ids) if self.layers[0].attention.cache.k.shape[0] == 1 else None
        if found is not None and whole(found[1]) > held:
            snapshot, held = found[0], whole(found[1])
            self._keep_cached()
            for layer, (k, v) in zip(self.layers, snapshot.layers):
                layer.attention.cache.update(0, k[:, :, :held], v[:, :, :held])
            self.cached = snapshot.tokens[:held]
        return held

    def prefill(self, ids: Sequence[int], start: int) -> Tensor:
        """Logits [vocab] of the last of `ids`, computing positions start.. chunk by chunk on the grid.

        start: a multiple of PREFILL_CHUNK (what reusable_prefix returns); rows before it are in the cache."""
        if start % PREFILL_CHUNK:
            raise ValueError(f"prefill starts on a chunk boundary, not at {start}")
        for begin in range(start, len(ids), PREFILL_CHUNK):
            chunk = list(ids[begin : begin + PREFILL_CHUNK])
            logits = self(torch.tensor([chunk], device=self.device), start=begin, last_only=True)
            if len(chunk) == PREFILL_CHUNK and len(self.cached) == begin and self.layers[0].attention.cache.k.shape[0] == 1:
                self.cached += chunk
        return logits[0, -1]

    def _keep_cached(self) -> None:
        """Copies what row 0 of the cache holds into the snapshots, before it is overwritten."""
        n = len(self.cached)
        self.snapshots.save(self.cached, [(layer.attention.cache.k[:1, :, :n], layer.attention.cache.v[:1, :, :n])
                                          for layer in self.layers])

    def compile_decode(self) -> None:
        """Compiles one block's decode step with torch.compile; every layer shares the compiled code.

        It fuses the small ops between the matmuls (about 60 per layer at batch 1). The first
        token after this pays the compilation (seconds); a compiler failure falls back to eager.
        """
        self.compiled_block = torch.compile(run_block, dynamic=True)

    def _blocks(self, x: Tensor, ropes: tuple[Tensor, ...], start: int | Rows) -> Tensor:
        """ropes: cos, sin of the global layers, then of the sliding-window layers."""
        one = isinstance(start, int) and x.shape[0] == 1
        if x.shape[1] == 1 and (one or isinstance(start, Rows) and start.slots is None) and \
                self.layers[0].attention.impl == "cpu":
            step = self._decode_step()
            if step is not None:
                return step(x, torch.tensor([start]) if one else start.positions, ropes)
        recording = self.layers[0].attention.record  # weights are read off eager attention, not compiled code
        compiled = self.compiled_block if x.shape[1] == 1 and not recording and isinstance(start, int) else None
        if compiled is not None:
            try:
                h = x
                for layer in self.layers:
                    h = compiled(layer, h, *ropes[2 * layer.sliding : 2 * layer.sliding + 2], start)
                return h
            except Exception as exc:  # no C++ compiler, an unsupported op: eager from now on (it rewrites the same cache rows)
                warnings.warn(f"torch.compile failed, decoding without it: {type(exc).__name__}: {exc}",
                              RuntimeWarning, stacklevel=3)
                self.compiled_block = None
        for layer in self.layers:
            x = layer(x, *ropes[2 * layer.sliding : 2 * layer.sliding + 2], start)
        return x

    def _decode_step(self) -> DecodeStep | None:
        """The blocks as one C++ call for a decoding step of one or more sequences, where they fit it (see
        cpu_decode.py); looked at again when a block's projections change (an adapter)."""
        if self.layers[0].attention.record or self.compiled_block is not None:
            return None
        key = key_of(self.block_modules)
        if key != self.decode_key:
            self.decode_step = DecodeStep(self) if fits(self) else None
            self.decode_key = key
        return self.decode_step

    def record_attention(self, on: bool) -> None:
        """While on, every forward keeps its last row's head-averaged attention weights (see `looked`)."""
        for layer in self.layers:
            layer.attention.record, layer.attention.looked = on, None

    def looked(self) -> Tensor:
        """[layers, positions]: where the last forward's last row looked, per layer, averaged over heads."""
        return torch.cat([layer.attention.looked for layer in self.layers])

    def set_attention(self, impl: str) -> None:
        for layer in self.layers:
            layer.attention.impl = impl

    def rope(self, start: int | Rows, length: int) -> tuple[Tensor, ...]:
        """cos and sin [length, 1, rotary_dim] for positions start.., global then sliding-window layers',
        from tables as long as the cache; for batched rows [rows, length, 1, rotary_dim] at each row's positions."""
        end = start.length if isinstance(start, Rows) else start + length
        if self.rope_cache is None or self.rope_cache[0].shape[0] < end:
            positions = torch.arange(max(end, self.max_cache_len), device=self.device, dtype=torch.float32)
            tables = []
            for inv_freq in (self.inv_freq, self.inv_freq_local) if self.config.rope_local_theta else (self.inv_freq,):
                freqs = positions[:, None] * inv_freq[None, :]
                emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
                factor = self.config.rope_attn_factor
                tables += [(emb.cos() * factor).to(self.dtype), (emb.sin() * factor).to(self.dtype)]
            self.rope_cache = tuple(tables) if len(tables) == 4 else tuple(tables) * 2
        if isinstance(start, Rows):
            return tuple(t[start.grid(length)] for t in self.rope_cache)
        return tuple(t[start:end] for t in self.rope_cache)

    def forward(self, ids: Tensor, start: int = 0, last_only: bool = False) -> Tensor:
        """Logits (float32) for token ids [B, T] placed at positions start..start+T-1."""
        if start < len(self.cached):  # rows from start on are overwritten: their chunks are no longer whole
            self._keep_cached()
            del self.cached[start - start % PREFILL_CHUNK :]
        return self.compute(ids, start, last_only)

    def compute(self, ids: Tensor, start: int | Rows, last_only: bool = False) -> Tensor:
        """forward() on whatever caches the layers hold, without row 0's bookkeeping (batch slots)."""
        x = self.embed(ids)
        x = self._blocks(x, self.rope(start, ids.shape[1]), start)
        if isinstance(start, Rows) and start.last is not None:
            x = x[torch.arange(x.shape[0], device=x.device), start.last][:, None]
        x = self.norm(x[:, -1:] if last_only else x)
        logits = self.output(x).float()
        cap = self.config.final_softcap
        return logits if not cap else torch.tanh(logits / cap) * cap
