"""What a loader hands the engine: architecture, weights by Hugging Face name, tokenizer, template."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backends.local.config import ModelConfig, ModelLoadError
from backends.local.quant import LoadSummary, Weight
from backends.local.tokenizer import LocalTokenizer


@dataclass
class Checkpoint:
    config: ModelConfig
    weights: dict[str, Weight]
    tokenizer: LocalTokenizer
    chat_template: str | None
    source: Path
    name: str = ""
    metadata: dict[str, object] = field(default_factory=dict)
    summary: LoadSummary = field(default_factory=LoadSummary)


def expected_weight_names(config: ModelConfig) -> set[str]:
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    if not config.tie_embeddings:
        names.add("lm_head.weight")
    for i in range(config.n_layers):
        prefix = f"model.layers.{i}."
        names |= {prefix + n + ".weight" for n in (
            "input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
            "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
        )}
        if config.qkv_bias:
            names |= {prefix + f"self_attn.{p}_proj.bias" for p in "qkv"}
    return names


def check_weights(config: ModelConfig, weights: dict[str, Weight], source: Path) -> None:
    """Every weight the architecture needs is there with the right shape; nothing is left over."""
    expected = expected_weight_names(config)
    optional = {"lm_head.weight", "rope_freqs", "lm_head.rows", "model.embed_tokens.rows"}
    missing = sorted(expected - set(weights))
    unexpected = sorted(set(weights) - expected - optional)
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} tensors (first: {', '.join(missing[:3])})")
        if unexpected:
            detail.append(f"unexpected {len(unexpected)} tensors (first: {', '.join(unexpected[:3])})")
        raise ModelLoadError(f"{source}: weights do not match a {config.family} model: " + "; ".join(detail))
    kv_dim = config.n_kv_heads * config.head_dim
    shapes = {
        "model.embed_tokens.weight": (config.vocab_size, config.dim),
        "model.layers.0.self_attn.q_proj.weight": (config.n_heads * config.head_dim, config.dim),
        "model.layers.0.self_attn.k_proj.weight": (kv_dim, config.dim),
        "model.layers.0.mlp.gate_proj.weight": (config.ffn_dim, config.dim),
        "model.layers.0.mlp.down_proj.weight": (config.dim, config.ffn_dim),
    }
    for name, shape in shapes.items():
        if tuple(weights[name].shape) != shape:
            raise ModelLoadError(
                f"{source}: tensor {name} has shape {tuple(weights[name].shape)}, the configuration implies {shape}"
            )
