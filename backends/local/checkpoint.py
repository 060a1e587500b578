"""What a loader hands the engine: architecture, weights by Hugging Face name, tokenizer, template."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backends.local.config import ModelConfig, ModelLoadError
from backends.local.quant import Deferred, LoadSummary, Weight, made, split_rows
from backends.local.tokenizer import LocalTokenizer


@dataclass
class Checkpoint:
    config: ModelConfig
    weights: dict[str, Weight | Deferred]  # a GGUF file's are converted when the model takes them
    tokenizer: LocalTokenizer
    chat_template: str | None
    source: Path
    name: str = ""
    metadata: dict[str, object] = field(default_factory=dict)
    summary: LoadSummary = field(default_factory=LoadSummary)


def split_fused(config: ModelConfig, weights: dict[str, Weight | Deferred]) -> None:
    """Phi-3's fused qkv_proj and gate_up_proj as the separate projections the model is built from."""
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    for i in range(config.n_layers):
        p = f"model.layers.{i}."
        for fused, parts, sizes in ((p + "self_attn.qkv_proj.weight", ("q", "k", "v"), (q, kv, kv)),
                                    (p + "mlp.gate_up_proj.weight", ("gate", "up"), (config.ffn_dim, config.ffn_dim))):
            if fused not in weights:
                continue
            w = made(weights.pop(fused))
            if w.shape[0] != sum(sizes):
                raise ModelLoadError(f"tensor {fused} has {w.shape[0]} rows, the configuration implies {sum(sizes)}")
            mlp = "gate" in parts
            for part, piece in zip(parts, split_rows(w, sizes)):
                weights[p + (f"mlp.{part}_proj.weight" if mlp else f"self_attn.{part}_proj.weight")] = piece


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
        if config.qk_norm:
            names |= {prefix + "self_attn.q_norm.weight", prefix + "self_attn.k_norm.weight"}
        if config.sandwich_norms:
            names |= {prefix + "pre_feedforward_layernorm.weight", prefix + "post_feedforward_layernorm.weight"}
        if config.qkv_bias:
            names |= {prefix + f"self_attn.{p}_proj.bias" for p in "qkv"}
    return names


def check_weights(config: ModelConfig, weights: dict[str, Weight | Deferred], source: Path) -> None:
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
