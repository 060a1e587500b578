"""The Transformer: RMSNorm, RoPE, grouped-query attention, SwiGLU, a preallocated KV cache.

Llama and Qwen2 differ only in flags (QKV bias, tied embeddings), so one model serves both.
Q/K/V and gate/up projections are fused at load time: fewer, larger matmuls per step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backends.local.attention import attention
from backends.local.config import ModelConfig, ModelLoadError


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_inv_freq(config: ModelConfig, freq_factors: Tensor | None = None) -> Tensor:
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if freq_factors is not None:  # GGUF's rope_freqs: per-frequency divisors (Llama 3 scaling)
        return inv_freq / freq_factors.float()
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


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class KVCache(nn.Module):
    def __init__(self, batch: int, n_kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        shape = (batch, n_kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def repeat(self, batch: int) -> None:
        """Copies row 0 into `batch` rows (beam search after a shared prefill)."""
        self.k = self.k[:1].repeat(batch, 1, 1, 1)
        self.v = self.v[:1].repeat(batch, 1, 1, 1)

    def update(self, start: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class Attention(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = c.n_heads, c.n_kv_heads, c.head_dim
        self.wqkv = nn.Linear(c.dim, (c.n_heads + 2 * c.n_kv_heads) * c.head_dim, bias=c.qkv_bias)
        self.wo = nn.Linear(c.n_heads * c.head_dim, c.dim, bias=False)
        self.cache: KVCache | None = None
        self.impl = "torch"  # attention implementation, see attention.choose

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, start: int) -> Tensor:
        b, t, _ = x.shape
        q_size, kv_size = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        q, k, v = self.wqkv(x).split([q_size, kv_size, kv_size], dim=-1)
        q = q.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.cache is not None:
            k, v = self.cache.update(start, k, v)
        out = attention(q, k, v, impl=self.impl)
        return self.wo(out.transpose(1, 2).reshape(b, t, q_size))


class FeedForward(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.ffn_dim = c.ffn_dim
        self.w13 = nn.Linear(c.dim, 2 * c.ffn_dim, bias=False)  # gate and up, fused
        self.w2 = nn.Linear(c.ffn_dim, c.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w13(x).split(self.ffn_dim, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(c.dim, c.norm_eps)
        self.attention = Attention(c)
        self.ffn_norm = RMSNorm(c.dim, c.norm_eps)
        self.feed_forward = FeedForward(c)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, start: int) -> Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, start)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = None if config.tie_embeddings else nn.Linear(config.dim, config.vocab_size, bias=False)
        self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)
        self.max_cache_len = 0

    def setup_cache(self, batch: int, max_len: int) -> None:
        """Preallocates each layer's K/V for `max_len` positions; later calls reuse it when big enough."""
        max_len = min(max_len, self.config.context_length)
        param = self.tok_embeddings.weight
        if self.max_cache_len >= max_len and self.layers[0].attention.cache.k.shape[0] == batch:
            return
        for layer in self.layers:
            c = self.config
            layer.attention.cache = KVCache(batch, c.n_kv_heads, max_len, c.head_dim, param.dtype, param.device)
        self.max_cache_len = max_len

    def set_attention(self, impl: str) -> None:
        for layer in self.layers:
            layer.attention.impl = impl

    def rope(self, start: int, length: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        positions = torch.arange(start, start + length, device=self.inv_freq.device, dtype=torch.float32)
        freqs = positions[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, ids: Tensor, start: int = 0, last_only: bool = False) -> Tensor:
        """Logits (float32) for token ids [B, T] placed at positions start..start+T-1."""
        x = self.tok_embeddings(ids)
        cos, sin = self.rope(start, ids.shape[1], x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, start)
        x = self.norm(x[:, -1:] if last_only else x)
        head = self.tok_embeddings.weight if self.output is None else self.output.weight
        return F.linear(x, head).float()

    def load_weights(self, weights: dict[str, Tensor]) -> None:
        """Loads Hugging Face-named weights, fusing Q/K/V and gate/up."""
        w = weights
        state: dict[str, Tensor] = {
            "tok_embeddings.weight": w["model.embed_tokens.weight"],
            "norm.weight": w["model.norm.weight"],
        }
        if self.output is not None:
            state["output.weight"] = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        for i in range(self.config.n_layers):
            p, o = f"model.layers.{i}.", f"layers.{i}."
            attn = p + "self_attn."
            state[o + "attention_norm.weight"] = w[p + "input_layernorm.weight"]
            state[o + "ffn_norm.weight"] = w[p + "post_attention_layernorm.weight"]
            state[o + "attention.wqkv.weight"] = torch.cat([w[attn + f"{x}_proj.weight"] for x in "qkv"])
            if self.config.qkv_bias:
                state[o + "attention.wqkv.bias"] = torch.cat([w[attn + f"{x}_proj.bias"] for x in "qkv"])
            state[o + "attention.wo.weight"] = w[attn + "o_proj.weight"]
            state[o + "feed_forward.w13.weight"] = torch.cat([w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]])
            state[o + "feed_forward.w2.weight"] = w[p + "mlp.down_proj.weight"]
        try:
            self.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"weights do not fit the model: {exc}") from exc
        self.inv_freq = rope_inv_freq(self.config, w.get("rope_freqs"))
