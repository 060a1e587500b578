"""Loading GGUF files with the `gguf` package: metadata, tensors, dequantization."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from backends.local.checkpoint import Checkpoint, check_weights
from backends.local.config import ModelConfig, ModelLoadError, family_of
from backends.local.tokenizer import LocalTokenizer

_LAYER_TENSORS = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "rope_freqs.weight": "rope_freqs",
}
_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")


def hf_name(gguf_name: str) -> str | None:
    if gguf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[gguf_name]
    match = _BLOCK.fullmatch(gguf_name)
    if match and match.group(2) in _LAYER_TENSORS:
        return f"model.layers.{match.group(1)}.{_LAYER_TENSORS[match.group(2)]}"
    return None


def unpermute_rope(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's reordering of Q/K rows for interleaved RoPE, back to Hugging Face's halves."""
    rows = weight.shape[0]
    return weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def permute_rope(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """What llama.cpp's converter does to Q/K of llama models (the inverse of unpermute_rope)."""
    rows = weight.shape[0]
    return weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


class _Fields:
    def __init__(self, reader: GGUFReader, source: Path) -> None:
        self.reader, self.source = reader, source

    def get(self, key: str, default: Any = None) -> Any:
        field = self.reader.get_field(key)
        if field is None:
            return default
        try:
            value = field.contents()
        except (UnicodeDecodeError, ValueError, IndexError) as exc:
            raise ModelLoadError(f"{self.source}: metadata key {key!r} is unreadable ({exc})") from exc
        return value

    def require(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise ModelLoadError(f"{self.source}: GGUF metadata lacks {key!r}")
        return value


def _config(fields: _Fields, arch: str, vocab_size: int, has_output: bool) -> ModelConfig:
    family = family_of(arch, str(fields.source))
    n_heads = int(fields.require(f"{arch}.attention.head_count"))
    dim = int(fields.require(f"{arch}.embedding_length"))
    if fields.get(f"{arch}.rope.scaling.type") not in (None, "none"):
        kind = fields.get(f"{arch}.rope.scaling.type")
        raise ModelLoadError(f"{fields.source}: RoPE scaling type {kind!r} is not supported")
    return ModelConfig(
        family=family,
        vocab_size=int(fields.get(f"{arch}.vocab_size", vocab_size)),
        dim=dim,
        n_layers=int(fields.require(f"{arch}.block_count")),
        n_heads=n_heads,
        n_kv_heads=int(fields.get(f"{arch}.attention.head_count_kv", n_heads)),
        ffn_dim=int(fields.require(f"{arch}.feed_forward_length")),
        context_length=int(fields.require(f"{arch}.context_length")),
        norm_eps=float(fields.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(fields.get(f"{arch}.rope.freq_base", 10000.0)),
        head_dim=int(fields.get(f"{arch}.attention.key_length", dim // n_heads)),
        tie_embeddings=not has_output,
        qkv_bias=family == "qwen2",
    )


def _tensor(tensor: Any, dtype: torch.dtype, source: Path) -> torch.Tensor:
    try:
        values = dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as exc:
        raise ModelLoadError(
            f"{source}: tensor {tensor.name} uses quantization {tensor.tensor_type.name}, which cannot be "
            f"dequantized ({exc})"
        ) from exc
    shape = tuple(int(d) for d in reversed(tensor.shape))
    if values.size != int(np.prod(shape)):
        raise ModelLoadError(f"{source}: tensor {tensor.name} holds {values.size} values, its shape says {shape}")
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape)).to(dtype)


def open_reader(path: Path) -> GGUFReader:
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    try:
        return GGUFReader(path, "r")
    except Exception as exc:  # the reader raises many kinds of errors on bad bytes
        raise ModelLoadError(f"{path}: not a readable GGUF file, it may be truncated or corrupt ({exc})") from exc


def load_gguf(path: Path, dtype: torch.dtype = torch.float32) -> Checkpoint:
    reader = open_reader(path)
    fields = _Fields(reader, path)
    arch = str(fields.require("general.architecture"))
    tokens = fields.require("tokenizer.ggml.tokens")
    names = {t.name for t in reader.tensors}
    config = _config(fields, arch, len(tokens), has_output="output.weight" in names)

    weights: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        if tensor.tensor_type not in GGMLQuantizationType.__members__.values():
            raise ModelLoadError(f"{path}: tensor {tensor.name} has an unknown type")
        name = hf_name(tensor.name)
        if name is None:
            raise ModelLoadError(f"{path}: unexpected tensor {tensor.name!r} for architecture {arch!r}")
        try:
            weights[name] = _tensor(tensor, dtype, path)
        except (ValueError, IndexError) as exc:
            raise ModelLoadError(f"{path}: tensor {tensor.name} is unreadable, the file may be truncated ({exc})") from exc
    if config.family == "llama":  # llama.cpp's converter permutes Q/K of llama-family models only
        for i in range(config.n_layers):
            prefix = f"model.layers.{i}.self_attn."
            for proj, heads in (("q_proj", config.n_heads), ("k_proj", config.n_kv_heads)):
                if prefix + proj + ".weight" in weights:
                    weights[prefix + proj + ".weight"] = unpermute_rope(weights[prefix + proj + ".weight"], heads)
    if "rope_freqs" in weights:
        weights["rope_freqs"] = weights["rope_freqs"].float()
    check_weights(config, weights, path)

    eos = fields.get("tokenizer.ggml.eos_token_id")
    eot = fields.get("tokenizer.ggml.eot_token_id")
    tokenizer = LocalTokenizer.from_gguf_vocab(
        path,
        model=str(fields.require("tokenizer.ggml.model")),
        pre=fields.get("tokenizer.ggml.pre"),
        tokens=list(tokens),
        token_types=fields.get("tokenizer.ggml.token_type"),
        merges=fields.get("tokenizer.ggml.merges"),
        bos_token_id=fields.get("tokenizer.ggml.bos_token_id"),
        eos_token_ids=[int(i) for i in (eos, eot) if i is not None],
        add_bos=bool(fields.get("tokenizer.ggml.add_bos_token", False)),
    )
    return Checkpoint(
        config=config,
        weights=weights,
        tokenizer=tokenizer,
        chat_template=fields.get("tokenizer.chat_template"),
        source=path,
        name=str(fields.get("general.name", path.stem)),
    )

