"""Loading GGUF files: metadata, tokenizer, and tensors as float (exact) or kept quantized (fast)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType

from backends.local.block_linear import INT5_TYPES, int5_from_gguf
from backends.local.chat_template import family_template
from backends.local.checkpoint import Checkpoint, check_weights, split_fused
from backends.local.config import ModelConfig, ModelLoadError, family_of
from backends.local.gguf_reader import GGUFFile, TensorInfo
from backends.local.quant import (
    INT4_TYPES,
    Deferred,
    LoadSummary,
    Weight,
    dequantize_rows,
    int4_from_gguf,
    int4_runs,
    int8_kind,
    map_rows,
    ours,
    requantized,
)
from backends.local.quant_layers import GGUFRows
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
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
# Gemma's norms around each sublayer: llama.cpp's ffn_norm is its pre-FFN norm.
_SANDWICH_TENSORS = _LAYER_TENSORS | {
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "ffn_norm.weight": "pre_feedforward_layernorm.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
}
# Phi-3 keeps Q/K/V in one tensor and gate/up in another; split by rows after loading (checkpoint.split_fused).
_FUSED_TENSORS = _LAYER_TENSORS | {"attn_qkv.weight": "self_attn.qkv_proj.weight", "ffn_up.weight": "mlp.gate_up_proj.weight"}
_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "rope_freqs.weight": "rope_freqs",
    "rope_factors_short.weight": "rope_freqs",  # Phi-3 LongRoPE, within its original context
    "rope_factors_long.weight": None,  # beyond it: the context is capped instead
}
_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")
SLIDING_PATTERN = {"gemma3": 6}  # every Nth layer global, as llama.cpp reads these files when no key says
LOCAL_ROPE_THETA = {"gemma3": 10000.0}  # llama.cpp's fixed base for gemma3's sliding-window layers


def layer_tensor_names(arch: str) -> dict[str, str]:
    """GGUF name -> Hugging Face name of each tensor of a layer, for an architecture."""
    return {"gemma3": _SANDWICH_TENSORS, "phi3": _FUSED_TENSORS}.get(arch, _LAYER_TENSORS)


def hf_name(gguf_name: str, arch: str = "llama") -> str | None:
    """The Hugging Face name of a GGUF tensor; None for one not used, "" for one not known."""
    if gguf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[gguf_name]
    layer_tensors = layer_tensor_names(arch)
    match = _BLOCK.fullmatch(gguf_name)
    if match and match.group(2) in layer_tensors:
        return f"model.layers.{match.group(1)}.{layer_tensors[match.group(2)]}"
    return ""


def unpermute_rope(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's reordering of Q/K rows for interleaved RoPE, back to Hugging Face's halves."""
    rows = weight.shape[0]
    return weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def permute_rope(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """What llama.cpp's converter does to Q/K of llama models (the inverse of unpermute_rope)."""
    rows = weight.shape[0]
    return weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def _family_options(fields: GGUFFile, arch: str, family: str, n_layers: int, dim: int, head_dim: int) -> dict[str, Any]:
    """What the file's keys (and llama.cpp's fixed choices for the architecture) say beyond the Llama basics."""
    options: dict[str, Any] = {"qk_norm": family in ("qwen3", "gemma3")}
    kind = fields.get(f"{arch}.rope.scaling.type")
    if kind == "linear":
        options["rope_linear_factor"] = float(fields.require(f"{arch}.rope.scaling.factor"))
    elif kind not in (None, "none") and not (family == "phi3" and kind in ("longrope", "su")):
        raise ModelLoadError(f"{fields.path}: RoPE scaling type {kind!r} is not supported (linear and llama3 are)")
    if fields.get(f"{arch}.rope.dimension_count"):
        options["rotary_dim"] = int(fields.get(f"{arch}.rope.dimension_count"))
    if family == "phi3" and fields.get(f"{arch}.rope.scaling.attn_factor"):
        options["rope_attn_factor"] = float(fields.get(f"{arch}.rope.scaling.attn_factor"))
    if family == "gemma3":
        pattern = fields.get(f"{arch}.attention.sliding_window_pattern", SLIDING_PATTERN[arch])
        if isinstance(pattern, (int, np.integer)):  # every Nth layer global; else one flag per layer, True: sliding
            pattern = [(i + 1) % int(pattern) != 0 for i in range(n_layers)]
        options |= {
            "sandwich_norms": True, "activation": "gelu_tanh", "embed_scale": math.sqrt(dim),
            "attn_scale": float(fields.get(f"{arch}.attention.scale", head_dim ** -0.5)),
            "sliding_window": int(fields.require(f"{arch}.attention.sliding_window")),
            "sliding_layers": tuple(bool(x) for x in pattern),
            "rope_local_theta": LOCAL_ROPE_THETA[arch],
        }
    softcap = fields.get(f"{arch}.final_logit_softcapping")
    if softcap:
        options["final_softcap"] = float(softcap)
    if fields.get(f"{arch}.attn_logit_softcapping"):
        raise ModelLoadError(f"{fields.path}: attention logit soft-capping (Gemma 2) is not supported")
    return options


def _config(fields: GGUFFile, arch: str, vocab_size: int, has_output: bool) -> ModelConfig:
    family = family_of(arch, str(fields.path))
    n_heads = int(fields.require(f"{arch}.attention.head_count"))
    dim = int(fields.require(f"{arch}.embedding_length"))
    n_layers = int(fields.require(f"{arch}.block_count"))
    head_dim = int(fields.get(f"{arch}.attention.key_length", dim // n_heads))
    context = int(fields.require(f"{arch}.context_length"))
    if family == "phi3":  # within the original context: short LongRoPE factors, no sliding window reached
        limits = [fields.get(f"{arch}.rope.scaling.original_context_length"), fields.get(f"{arch}.attention.sliding_window")]
        context = min([context, *(int(x) for x in limits if x)])
    return ModelConfig(
        family=family,
        vocab_size=int(fields.get(f"{arch}.vocab_size", vocab_size)),
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=int(fields.get(f"{arch}.attention.head_count_kv", n_heads)),
        ffn_dim=int(fields.require(f"{arch}.feed_forward_length")),
        context_length=context,
        norm_eps=float(fields.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(fields.get(f"{arch}.rope.freq_base", 10000.0)),
        head_dim=head_dim,
        tie_embeddings=not has_output,
        qkv_bias=family == "qwen2",
        **_family_options(fields, arch, family, n_layers, dim, head_dim),
    )


FLOAT_TYPES = (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16)


def _float(file: GGUFFile, info: TensorInfo) -> torch.Tensor:
    return dequantize_rows(file.raw(info), info.type).reshape(info.shape)


def _check_readable(file: GGUFFile, info: TensorInfo) -> None:
    """Refuses a type that cannot be dequantized when the file is opened, not when a layer is built."""
    if info.type in FLOAT_TYPES or info.type in INT4_TYPES:
        return
    try:
        dequantize_rows(file.raw(info)[:1], info.type)
    except NotImplementedError as exc:
        raise ModelLoadError(
            f"{file.path}: tensor {info.name} uses quantization {info.type.name}, which cannot be dequantized ({exc})"
        ) from exc


def _deferred(file: GGUFFile, info: TensorInfo, convert: Callable[[], Weight], floating: bool) -> Deferred:
    """Converted when the model takes it; then the tensor's pages may leave memory."""
    def make() -> Weight:
        weight = convert()
        file.release(info)
        return weight

    return Deferred(info.shape, make, floating)


def _quantized(file: GGUFFile, info: TensorInfo, name: str, tied: bool, summary: LoadSummary) -> dict[str, Weight | Deferred]:
    """A quantized tensor in fast mode: Q4_0/Q4_1/Q4_K as int4 groups, Q5_0/Q5_1 as int5 groups for our
    kernels, other types as int8 blocks of 32 for ours (Q8_0 exactly) or requantized to int8 rows for torch's (quant.ours;
    with torch's, int4 becomes int8 rows on CPUs without AVX-512, see quant.int4_kernel_is_fast).

    Token embeddings and the output head also keep the file's blocks (`<name>.rows`, a view of
    the memory-mapped file), looked up row by row: embeddings of the prompt's tokens, the head's
    top candidates. The head's matmul only ranks the candidates, so it is int4 groups whatever
    the file's type (int8 rows where the kernel's shape limits forbid or int8 is faster); an
    untied embedding needs no matmul at all.
    """
    base = name.removesuffix(".weight")
    if name == "model.embed_tokens.weight" and not tied:
        summary.add("rows", info.name)
        return {name: GGUFRows(file.raw(info), info.type, info.name)}
    raw = file.raw(info)
    if name in ("lm_head.weight", "model.embed_tokens.weight"):
        int4 = int4_runs(tuple(info.shape))
        summary.add(("int4" if int4 else "int8") + "+rows", info.name)
        rough = _deferred(file, info, lambda: requantized(raw, info.type, "int4" if int4 else "int8",
                                                          lambda first, end: file.release(info, first, end)), False)
        return {name: rough, base + ".rows": GGUFRows(raw, info.type, info.name)}
    if len(info.shape) != 2:
        return {name: _deferred(file, info, lambda: _float(file, info), True)}
    if info.type in INT4_TYPES:  # exact as int4 groups; on CPUs where int8 is faster, linear() makes int8 rows of them
        summary.add("int4" if int4_runs(tuple(info.shape)) else "int8", info.name)
        return {name: _deferred(file, info, lambda: int4_from_gguf(raw, info.type), False)}
    if info.type in INT5_TYPES and ours():  # exact, and 0.75 bytes a value where int8 blocks take 1.06
        summary.add("int5", info.name)
        return {name: _deferred(file, info, lambda: int5_from_gguf(raw, info.type), False)}
    summary.add("int8", info.name)
    kind = int8_kind()
    return {name: _deferred(file, info, lambda: requantized(raw, info.type, kind), False)}


def _int_list(values: Any) -> list[int] | None:
    return None if values is None else [int(v) for v in values]


def load_gguf(path: Path, dtype: torch.dtype = torch.float32, quantized: bool = False) -> Checkpoint:
    """Reads a GGUF file; `quantized` keeps quantized tensors as int4/int8 weights instead of float."""
    file = fields = GGUFFile(path)
    arch = str(fields.require("general.architecture"))
    tokens = fields.require("tokenizer.ggml.tokens")
    if not isinstance(tokens, list):
        raise ModelLoadError(f"{path}: tokenizer.ggml.tokens is not a list of strings")
    config = _config(fields, arch, len(tokens), has_output="output.weight" in file.tensors)

    summary = LoadSummary()
    weights: dict[str, Weight | Deferred] = {}
    for info in file.tensors.values():
        name = hf_name(info.name, arch)
        if not name:
            if name == "":
                raise ModelLoadError(f"{path}: unexpected tensor {info.name!r} for architecture {arch!r}")
            continue
        _check_readable(file, info)
        if quantized and info.type not in FLOAT_TYPES:
            weights |= _quantized(file, info, name, config.tie_embeddings, summary)
        else:
            weights[name] = _deferred(file, info, lambda info=info: _float(file, info), True)
    if config.family == "llama":  # llama.cpp's converter permutes Q/K of llama-family models only
        for i in range(config.n_layers):
            prefix = f"model.layers.{i}.self_attn."
            for proj, heads in (("q_proj", config.n_heads), ("k_proj", config.n_kv_heads)):
                if prefix + proj + ".weight" in weights:
                    weights[prefix + proj + ".weight"] = weights[prefix + proj + ".weight"].then(
                        lambda w, h=heads: map_rows(w, lambda t: unpermute_rope(t, h)))
    split_fused(config, weights)
    check_weights(config, weights, path)

    eos = fields.get("tokenizer.ggml.eos_token_id")
    eot = fields.get("tokenizer.ggml.eot_token_id")
    tokenizer = LocalTokenizer.from_gguf_vocab(
        path,
        model=str(fields.require("tokenizer.ggml.model")),
        pre=fields.get("tokenizer.ggml.pre"),
        tokens=list(tokens),
        token_types=_int_list(fields.get("tokenizer.ggml.token_type")),
        merges=fields.get("tokenizer.ggml.merges"),
        scores=fields.get("tokenizer.ggml.scores"),
        add_space_prefix=bool(fields.get("tokenizer.ggml.add_space_prefix", True)),
        bos_token_id=fields.get("tokenizer.ggml.bos_token_id"),
        eos_token_ids=[int(i) for i in (eos, eot) if i is not None],
        add_bos=bool(fields.get("tokenizer.ggml.add_bos_token", False)),
    )
    return Checkpoint(
        config=config,
        weights=weights,
        tokenizer=tokenizer,
        chat_template=fields.get("tokenizer.chat_template") or family_template(config.family),
        source=path,
        name=str(fields.get("general.name", path.stem)),
        summary=summary,
    )

