"""Merging an adapter into its model: a Hugging Face safetensors folder (config, weights, tokenizer,
chat template) that our loader and transformers both load, with the adapter's update in the weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from backends.local import lora
from backends.local.backend import LocalBackend
from backends.local.model import rope_inv_freq
from backends.local.quant_layers import DenseLinear

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}


def _dense(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight with any adapter update added, bias) of a projection of the exact engine."""
    base, update = module, None
    if isinstance(module, lora.LoRALinear):
        base, update = module.base, (module.lora_b @ module.lora_a) * module.scale
    if not isinstance(base, DenseLinear):
        raise ValueError("merging needs the float weights: load the model with precision='exact'")
    weight = base.weight.detach().float()
    return (weight if update is None else weight + update.detach().float()), base.bias


def hf_config(backend: LocalBackend) -> dict:
    c = backend.loaded.config
    tok = backend.tokenizer
    config = {
        "model_type": c.family, "architectures": [ARCHITECTURES[c.family]], "vocab_size": c.vocab_size,
        "hidden_size": c.dim, "intermediate_size": c.ffn_dim, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "head_dim": c.head_dim,
        "max_position_embeddings": c.context_length, "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta,
        "tie_word_embeddings": c.tie_embeddings, "torch_dtype": "float32", "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    if c.rope_scaling is not None:
        config["rope_scaling"] = {"rope_type": "llama3", **vars(c.rope_scaling)}
    if c.family == "llama" and c.qkv_bias:
        config["attention_bias"] = True
    return config


def merge(backend: LocalBackend, out: Path) -> Path:
    """Writes the model with its adapter merged into `out`."""
    model, c = backend.loaded.model, backend.loaded.config
    if not lora.adapters(model):
        raise ValueError("there is no adapter to merge: load the model with adapter=...")
    if not torch.allclose(model.inv_freq, rope_inv_freq(c)):
        raise ValueError("this model's RoPE frequencies come from its GGUF's rope_freqs, which config.json cannot state")
    h, hkv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    weights: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(model.layers):
        prefix = f"model.layers.{i}."
        qkv, bias = _dense(layer.attention.wqkv)
        for name, part in zip("qkv", qkv.split([h, hkv, hkv])):
            weights[f"{prefix}self_attn.{name}_proj.weight"] = part
        if bias is not None:
            for name, part in zip("qkv", bias.detach().float().split([h, hkv, hkv])):
                weights[f"{prefix}self_attn.{name}_proj.bias"] = part
        weights[f"{prefix}self_attn.o_proj.weight"] = _dense(layer.attention.wo)[0]
        gate, up = _dense(layer.feed_forward.w13)[0].split([c.ffn_dim, c.ffn_dim])
        weights[f"{prefix}mlp.gate_proj.weight"], weights[f"{prefix}mlp.up_proj.weight"] = gate, up
        weights[f"{prefix}mlp.down_proj.weight"] = _dense(layer.feed_forward.w2)[0]
        weights[f"{prefix}input_layernorm.weight"] = layer.attention_norm.weight.detach().float()
        weights[f"{prefix}post_attention_layernorm.weight"] = layer.ffn_norm.weight.detach().float()
    weights["model.norm.weight"] = model.norm.weight.detach().float()
    weights["model.embed_tokens.weight"] = _dense(model.tok_embeddings)[0]
    if not c.tie_embeddings:
        weights["lm_head.weight"] = _dense(model.output)[0]
    out.mkdir(parents=True, exist_ok=True)
    save_file({name: t.contiguous() for name, t in weights.items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(hf_config(backend), indent=2))
    tok = backend.tokenizer
    tok.hf.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": tok.token_text(tok.bos_token_id) if tok.bos_token_id is not None else None,
        "eos_token": tok.token_text(tok.eos_token_id) if tok.eos_token_id is not None else None,
        "add_bos_token": tok.add_bos, "chat_template": backend.loaded.chat_template,
    }, indent=2))
    return out
