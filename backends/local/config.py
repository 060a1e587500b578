"""The architecture description our model is built from, whatever file it came from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal


class ModelLoadError(RuntimeError):
    """A model file or folder could not be loaded; the message names the file and the problem."""


Family = Literal["llama", "qwen2"]

# How weights are kept in memory; see loader.py.
PRECISIONS = ("exact", "fast", "int8", "int4")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    return precision

# Hugging Face model_type / GGUF general.architecture -> the family that runs it.
FAMILIES: dict[str, Family] = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}


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
        if not problems and self.head_dim % 2:
            problems.append(f"head_dim ({self.head_dim}) must be even for rotary embeddings")
        if not math.isfinite(self.rope_theta) or self.rope_theta <= 0:
            problems.append(f"rope_theta must be a positive number, got {self.rope_theta}")
        if problems:
            raise ModelLoadError("invalid model configuration: " + "; ".join(problems))


def family_of(name: str, source: str) -> Family:
    family = FAMILIES.get(name)
    if family is None:
        raise ModelLoadError(
            f"{source}: unsupported architecture {name!r}; supported: {', '.join(sorted(FAMILIES))}"
        )
    return family
