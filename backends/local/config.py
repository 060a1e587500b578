"""The architecture description our model is built from, whatever file it came from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal


class ModelLoadError(RuntimeError):
    """A model file or folder could not be loaded; the message names the file and the problem."""


Family = Literal["llama", "qwen2", "qwen3", "gemma3", "phi3"]

# How weights are kept in memory; see loader.py.
PRECISIONS = ("exact", "fast", "int8", "int4")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    return precision

# Hugging Face model_type / GGUF general.architecture -> the family that runs it.
# gemma3 is a GGUF architecture (the text model; llama.cpp puts the vision tower in another file),
# gemma3_text the model_type of a text-only Hugging Face checkpoint.
FAMILIES: dict[str, Family] = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
                               "gemma3": "gemma3", "gemma3_text": "gemma3", "phi3": "phi3"}


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3 style frequency scaling (rope_type "llama3")."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclass(frozen=True)
class ModelConfig:
    family: Family
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    context_length: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    head_dim: int = 0  # 0: dim // n_heads
    tie_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False  # RMSNorm over each query and key head before RoPE (qwen3, gemma3)
    sandwich_norms: bool = False  # RMSNorm on the attention and FFN outputs too, before the residual add (gemma3)
    activation: Literal["silu", "gelu_tanh"] = "silu"  # of the gated FFN
    embed_scale: float = 1.0  # token embeddings are multiplied by it (gemma: sqrt(dim))
    attn_scale: float = 0.0  # query scale; 0: 1 / sqrt(head_dim)
    final_softcap: float = 0.0  # logits = c * tanh(logits / c) when c > 0
    sliding_window: int = 0  # keys a sliding-window layer sees, itself included
    sliding_layers: tuple[bool, ...] = ()  # per layer: True for sliding-window attention
    rope_local_theta: float = 0.0  # RoPE base of the sliding-window layers (0: rope_theta)
    rope_linear_factor: float = 1.0  # positions divided by it (linear RoPE scaling; global layers only)
    rotary_dim: int = 0  # leading dimensions of each head that RoPE turns (0: all)
    rope_attn_factor: float = 1.0  # cos and sin are multiplied by it (Phi-3's LongRoPE)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.dim // max(self.n_heads, 1))
        problems = [
            f"{name} must be positive, got {value}"
            for name, value in [
                ("vocab_size", self.vocab_size), ("dim", self.dim), ("n_layers", self.n_layers),
                ("n_heads", self.n_heads), ("n_kv_heads", self.n_kv_heads), ("ffn_dim", self.ffn_dim),
                ("context_length", self.context_length), ("head_dim", self.head_dim),
            ]
            if not (isinstance(value, int) and value > 0)
        ]
        if not problems and self.n_heads % self.n_kv_heads:
            problems.append(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if not self.rotary_dim:
            object.__setattr__(self, "rotary_dim", self.head_dim)
        if self.sliding_layers and len(self.sliding_layers) != self.n_layers:
            problems.append(f"sliding_layers names {len(self.sliding_layers)} layers, the model has {self.n_layers}")
        if not problems and (self.rotary_dim % 2 or self.rotary_dim > self.head_dim):
            problems.append(f"rotary dimensions ({self.rotary_dim}) must be even and at most head_dim ({self.head_dim})")
        if not math.isfinite(self.rope_theta) or self.rope_theta <= 0:
            problems.append(f"rope_theta must be a positive number, got {self.rope_theta}")
        if self.activation not in ("silu", "gelu_tanh"):
            problems.append(f"activation {self.activation!r} is not supported (silu, gelu_tanh are)")
        if problems:
            raise ModelLoadError("invalid model configuration: " + "; ".join(problems))


def family_of(name: str, source: str) -> Family:
    family = FAMILIES.get(name)
    if family is None:
        raise ModelLoadError(
            f"{source}: unsupported architecture {name!r}; supported: {', '.join(sorted(FAMILIES))}"
        )
    return family
