"""Loading Hugging Face checkpoint folders: config.json, safetensors (sharded or not), tokenizer.json.

Pickled checkpoints (*.bin, *.pt) are never loaded: unpickling runs code from the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from backends.local.checkpoint import Checkpoint, check_weights, split_fused
from backends.local.config import ModelConfig, ModelLoadError, RopeScaling, family_of
from backends.local.tokenizer import LocalTokenizer


def _read_json(path: Path, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ModelLoadError(f"{path}: missing (a Hugging Face model folder needs it)")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return data


def _rope_params(cfg: dict[str, Any], layer_type: str = "full_attention") -> dict[str, Any]:
    # transformers 5 moved rope_theta and rope_scaling into rope_parameters, per layer type for Gemma 3.
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    nested = params.get(layer_type)
    return nested if isinstance(nested, dict) else params


def _rope(cfg: dict[str, Any], source: Path) -> tuple[float, RopeScaling | None, dict[str, Any]]:
    """(theta, Llama 3 scaling, other options) of the global layers."""
    params = _rope_params(cfg)
    theta = float(cfg.get("rope_theta") or params.get("rope_theta") or 10000.0)
    kind = params.get("rope_type", params.get("type", "default"))
    if kind in (None, "default"):
        return theta, None, {}
    if kind == "linear":
        return theta, None, {"rope_linear_factor": float(params["factor"])}
    if kind in ("longrope", "su") and cfg.get("model_type") == "phi3":  # short factors: see _family_options
        return theta, None, {}
    if kind != "llama3":
        raise ModelLoadError(f"{source}: RoPE scaling type {kind!r} is not supported (default, linear and llama3 are)")
    return theta, RopeScaling(
        factor=float(params["factor"]),
        low_freq_factor=float(params["low_freq_factor"]),
        high_freq_factor=float(params["high_freq_factor"]),
        original_max_position_embeddings=int(params["original_max_position_embeddings"]),
    ), {}


def _family_options(cfg: dict[str, Any], family: str, dim: int, head_dim: int, n_layers: int,
                    source: Path) -> dict[str, Any]:
    """What Qwen3, Gemma 3 and Phi-3 configs say beyond the Llama basics."""
    options: dict[str, Any] = {"qk_norm": family in ("qwen3", "gemma3")}
    rotary = cfg.get("partial_rotary_factor")
    if rotary:
        options["rotary_dim"] = int(head_dim * float(rotary))
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if family == "phi3" and params.get("short_factor"):
        original = int(cfg.get("original_max_position_embeddings") or params["original_max_position_embeddings"])
        factor = int(cfg.get("max_position_embeddings", original)) / original
        default = math.sqrt(1 + math.log(factor) / math.log(original)) if factor > 1 else 1.0
        options["rope_attn_factor"] = float(params.get("attention_factor") or default)
    if family == "gemma3":
        types = cfg.get("layer_types") or [
            "full_attention" if (i + 1) % int(cfg.get("sliding_window_pattern", 6)) == 0 else "sliding_attention"
            for i in range(n_layers)]
        local = cfg.get("rope_local_base_freq") or _rope_params(cfg, "sliding_attention").get("rope_theta", 10000.0)
        options |= {
            "sandwich_norms": True, "embed_scale": math.sqrt(dim),
            "activation": {"gelu_pytorch_tanh": "gelu_tanh"}.get(cfg.get("hidden_activation"), cfg.get("hidden_activation")),
            "attn_scale": float(cfg.get("query_pre_attn_scalar") or head_dim) ** -0.5,
            "sliding_window": int(cfg.get("sliding_window") or 0),
            "sliding_layers": tuple(t == "sliding_attention" for t in types),
            "rope_local_theta": float(local),
        }
    if cfg.get("final_logit_softcapping"):
        options["final_softcap"] = float(cfg["final_logit_softcapping"])
    if cfg.get("attn_logit_softcapping"):
        raise ModelLoadError(f"{source}: attention logit soft-capping (Gemma 2) is not supported")
    return options


def config_from_hf(cfg: dict[str, Any], source: Path) -> ModelConfig:
    if "text_config" in cfg:
        raise ModelLoadError(f"{source}: a multimodal checkpoint ({cfg.get('model_type')}); its text model loads from "
                             "a GGUF file or a text-only folder")
    family = family_of(str(cfg.get("model_type")), str(source))
    try:
        n_heads = int(cfg["num_attention_heads"])
        dim = int(cfg["hidden_size"])
        head_dim = int(cfg.get("head_dim") or dim // n_heads)
        theta, scaling, rope_options = _rope(cfg, source)
        context = int(cfg.get("max_position_embeddings", 2048))
        window = cfg.get("sliding_window")
        if window and (cfg.get("model_type") in ("mistral", "phi3") or cfg.get("use_sliding_window")):
            context = min(context, int(window))  # within the window, full attention is exact
        if family == "phi3" and cfg.get("original_max_position_embeddings"):  # LongRoPE's short factors hold up to here
            context = min(context, int(cfg["original_max_position_embeddings"]))
        return ModelConfig(
            family=family,
            vocab_size=int(cfg["vocab_size"]),
            dim=dim,
            n_layers=int(cfg["num_hidden_layers"]),
            n_heads=n_heads,
            n_kv_heads=int(cfg.get("num_key_value_heads") or n_heads),
            ffn_dim=int(cfg["intermediate_size"]),
            context_length=context,
            norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            rope_scaling=scaling,
            head_dim=head_dim,
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=family == "qwen2" or bool(cfg.get("attention_bias", False)),
            **rope_options,
            **_family_options(cfg, family, dim, head_dim, int(cfg["num_hidden_layers"]), source),
        )
    except KeyError as exc:
        raise ModelLoadError(f"{source}: config.json lacks {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{source}: config.json has a bad value ({exc})") from exc


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map", {})
        shards = sorted(set(weight_map.values()))
        paths = [folder / s for s in shards]
        for path in paths:
            if path.parent != folder or not path.is_file():
                raise ModelLoadError(f"{index}: shard {path.name!r} is missing or outside the folder")
        return paths
    single = sorted(folder.glob("*.safetensors"))
    if single:
        return single
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise ModelLoadError(
            f"{folder}: only pickled weights (*.bin, *.pt) found; they are never loaded because unpickling "
            "runs code. Convert them to safetensors first."
        )
    raise ModelLoadError(f"{folder}: no *.safetensors weights found")


def load_hf_folder(folder: Path, dtype: torch.dtype = torch.float32) -> Checkpoint:
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: no such model folder")
    raw = _read_json(folder / "config.json")
    config = config_from_hf(raw, folder / "config.json")
    weights: dict[str, torch.Tensor] = {}
    for path in _weight_files(folder):
        try:
            shard = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"{path}: not a readable safetensors file ({exc})") from exc
        weights.update({name: t.to(dtype) for name, t in shard.items()})
    # Some exports keep rotary caches or tied heads; they are derived, not learned.
    weights = {k: v for k, v in weights.items() if not k.endswith("rotary_emb.inv_freq")}
    if config.tie_embeddings:
        weights.pop("lm_head.weight", None)
    if config.family == "gemma3":  # Gemma scales by (1 + weight): stored so, as llama.cpp stores it
        weights = {k: v + 1 if k.endswith("norm.weight") else v for k, v in weights.items()}
    params = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    if config.family == "phi3" and params.get("short_factor"):
        weights["rope_freqs"] = torch.tensor(params["short_factor"], dtype=torch.float32)
    split_fused(config, weights)
    check_weights(config, weights, folder)

    tok_cfg = _read_json(folder / "tokenizer_config.json", required=False)
    gen_cfg = _read_json(folder / "generation_config.json", required=False)
    if not (folder / "tokenizer.json").is_file():
        raise ModelLoadError(f"{folder}: no tokenizer.json (slow tokenizers are not supported)")
    eos: list[Any] = []
    for value in (gen_cfg.get("eos_token_id"), raw.get("eos_token_id"), _token(tok_cfg.get("eos_token"))):
        eos += value if isinstance(value, list) else [value] if value is not None else []
    tokenizer = LocalTokenizer.from_file(
        folder / "tokenizer.json",
        bos_token=_token(tok_cfg.get("bos_token")),
        eos_tokens=eos,
        add_bos=bool(tok_cfg.get("add_bos_token", False)),
    )
    return Checkpoint(
        config=config,
        weights=weights,
        tokenizer=tokenizer,
        chat_template=_chat_template(folder, tok_cfg),
        source=folder,
        name=folder.name,
    )


def _token(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _chat_template(folder: Path, tok_cfg: dict[str, Any]) -> str | None:
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    template = tok_cfg.get("chat_template")
    if isinstance(template, list):  # named templates: use "default"
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None
