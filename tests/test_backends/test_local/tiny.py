"""Tiny random-weight models of each family, written as Hugging Face folders and as GGUF files."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from backends.local.gguf_file import permute_rope

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "def add(a, b):\n    return a + b\n",
    "hello world, hello tokens; 12345 67890",
] * 20


def tiny_tokenizer(specials: list[str] = SPECIALS, added: list[str] = ()) -> Tokenizer:
    """A byte-level BPE trained on a small corpus. `specials` become control tokens; `added`
    are added tokens that are not special, as Qwen2.5 ships its <tool_call> tags."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    return tok


def tiny_config(family: str, vocab_size: int) -> dict:
    base = {
        "vocab_size": vocab_size, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
        "bos_token_id": 0, "eos_token_id": 2,
    }
    if family == "llama":
        return base | {
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_key_value_heads": 2,
            "rope_theta": 10000.0, "tie_word_embeddings": False,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        }
    if family == "qwen2":
        return base | {
            "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "num_key_value_heads": 1,
            "intermediate_size": 96, "rope_theta": 1000000.0, "tie_word_embeddings": True,
        }
    if family == "mistral":
        return base | {
            "model_type": "mistral", "architectures": ["MistralForCausalLM"], "num_key_value_heads": 4,
            "head_dim": 32, "rope_theta": 10000.0, "tie_word_embeddings": False, "sliding_window": None,
        }
    raise ValueError(family)


def random_weights(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dim, ffn, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    head_dim = cfg.get("head_dim") or dim // cfg["num_attention_heads"]
    q_dim, kv_dim = cfg["num_attention_heads"] * head_dim, cfg["num_key_value_heads"] * head_dim

    def rand(*shape: int, scale: float = 0.08) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    w = {"model.embed_tokens.weight": rand(vocab, dim, scale=0.5), "model.norm.weight": 1 + rand(dim)}
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = rand(vocab, dim, scale=0.2)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w |= {
            p + "input_layernorm.weight": 1 + rand(dim), p + "post_attention_layernorm.weight": 1 + rand(dim),
            p + "self_attn.q_proj.weight": rand(q_dim, dim), p + "self_attn.k_proj.weight": rand(kv_dim, dim),
            p + "self_attn.v_proj.weight": rand(kv_dim, dim), p + "self_attn.o_proj.weight": rand(dim, q_dim),
            p + "mlp.gate_proj.weight": rand(ffn, dim), p + "mlp.up_proj.weight": rand(ffn, dim),
            p + "mlp.down_proj.weight": rand(dim, ffn),
        }
        if cfg["model_type"] == "qwen2":
            w |= {p + "self_attn.q_proj.bias": rand(q_dim), p + "self_attn.k_proj.bias": rand(kv_dim),
                  p + "self_attn.v_proj.bias": rand(kv_dim)}
    return w


def write_hf_folder(folder: Path, cfg: dict, weights: dict[str, torch.Tensor], tokenizer: Tokenizer, shards: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "chat_template": CHATML, "add_bos_token": False}
    ))
    names = sorted(weights)
    if shards == 1:
        save_file({n: weights[n].contiguous() for n in names}, str(folder / "model.safetensors"))
        return folder
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        shard = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: weights[n].contiguous() for n in part}, str(folder / shard))
        weight_map |= {n: shard for n in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def llama3_rope_factors(cfg: dict) -> np.ndarray:
    """What llama.cpp's converter stores as rope_freqs.weight for Llama 3 scaling."""
    s = cfg["rope_scaling"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    freqs = 1.0 / (cfg["rope_theta"] ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    old, low, high = s["original_max_position_embeddings"], s["low_freq_factor"], s["high_freq_factor"]
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(s["factor"])
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / s["factor"] + smooth))
    return np.array(out, dtype=np.float32)


_GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}


def quantize_q4_k(array: np.ndarray) -> np.ndarray:
    """Q4_K blocks of a float matrix (gguf-py has no Q4_K quantizer): per 32 values a 6-bit
    scale and min, per 256 an f16 d and dmin, as ggml lays them out."""
    rows = array.shape[0]
    sub = array.astype(np.float32).reshape(-1, 8, 32)
    low = np.minimum(sub.min(-1), 0)
    step = (sub.max(-1) - low) / 15
    d = np.maximum(step.max(-1, keepdims=True) / 63, 1e-12).astype(np.float16).astype(np.float32)
    dmin = np.maximum(-low.min(-1, keepdims=True) / 63, 1e-12).astype(np.float16).astype(np.float32)
    sc = np.clip(np.round(step / d), 1, 63).astype(np.uint8)
    mins = np.clip(np.round(-low / dmin), 0, 63).astype(np.uint8)
    q = np.round((sub + (dmin * mins)[..., None]) / (d * sc)[..., None]).clip(0, 15).astype(np.uint8)
    scales = np.concatenate([
        (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6),
        (mins[:, :4] & 63) | ((mins[:, 4:] >> 4) << 6),
        (sc[:, 4:] & 15) | ((mins[:, 4:] & 15) << 4),
    ], axis=-1)
    pairs = q.reshape(-1, 4, 2, 32)
    qs = (pairs[:, :, 0] | (pairs[:, :, 1] << 4)).reshape(-1, 128)
    blocks = np.concatenate([d.astype(np.float16).view(np.uint8), dmin.astype(np.float16).view(np.uint8), scales, qs], axis=-1)
    return blocks.reshape(rows, -1)


def _quantize(array: np.ndarray, quant: GGMLQuantizationType) -> np.ndarray:
    return quantize_q4_k(array) if quant == GGMLQuantizationType.Q4_K else quantize(array, quant)


QuantChoice = GGMLQuantizationType | Callable[[str], GGMLQuantizationType | None] | None


def write_gguf(
    path: Path,
    cfg: dict,
    weights: dict[str, torch.Tensor],
    tokenizer: Tokenizer,
    quant: QuantChoice = None,
    arch: str | None = None,
    chat_template: str = CHATML,
    pre: str = "default",
    bos: str = "<|endoftext|>",
    eos: str = "<|im_end|>",
) -> Path:
    """Writes the model as llama.cpp's converter would: GGUF names, llama Q/K permuted, rope_freqs.

    quant: one type for every matrix, or a function of the GGUF tensor name (None: float32).
    """
    arch = arch or {"mistral": "llama"}.get(cfg["model_type"], cfg["model_type"])
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    writer = GGUFWriter(str(path), arch)
    writer.add_name("tiny-" + cfg["model_type"])
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(cfg["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    model = json.loads(tokenizer.to_str())["model"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    added = {t.content: t.special for t in tokenizer.get_added_tokens_decoder().values()}
    writer.add_token_types([1 if t not in added else 3 if added[t] else 4 for t in tokens])  # normal, control, user-defined
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model["merges"]])
    writer.add_bos_token_id(vocab[bos])
    writer.add_eos_token_id(vocab[eos])
    writer.add_chat_template(chat_template)

    def put(name: str, tensor: torch.Tensor) -> None:
        array = tensor.float().numpy()
        kind = quant(name) if callable(quant) else quant
        block = 256 if kind == GGMLQuantizationType.Q4_K else 32
        if kind is not None and array.ndim == 2 and array.shape[1] % block == 0:
            writer.add_tensor(name, _quantize(array, kind), raw_dtype=kind)
        else:
            writer.add_tensor(name, array)

    put("token_embd.weight", weights["model.embed_tokens.weight"])
    put("output_norm.weight", weights["model.norm.weight"])
    if "lm_head.weight" in weights:
        put("output.weight", weights["lm_head.weight"])
    if cfg.get("rope_scaling"):
        put("rope_freqs.weight", torch.from_numpy(llama3_rope_factors(cfg)))
    for i in range(cfg["num_hidden_layers"]):
        for hf, gg in _GGUF_NAMES.items():
            name = f"model.layers.{i}.{hf}"
            if name not in weights:
                continue
            tensor = weights[name]
            if arch == "llama" and hf.startswith(("self_attn.q_proj", "self_attn.k_proj")):
                tensor = permute_rope(tensor, heads if "q_proj" in hf else kv_heads)
            put(f"blk.{i}.{gg}", tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# The mix of types a llama.cpp Q4_K_M file carries, on dimensions that Q4_K blocks (256) do not
# all divide: llama.cpp then falls back to 32-value types, as here.
Q4_K_M_LIKE = {"attn_q": GGMLQuantizationType.Q4_0, "attn_k": GGMLQuantizationType.Q4_0,
               "attn_v": GGMLQuantizationType.Q8_0, "attn_output": GGMLQuantizationType.Q5_0,
               "ffn_gate": GGMLQuantizationType.Q4_1, "ffn_up": GGMLQuantizationType.Q4_1,
               "ffn_down": GGMLQuantizationType.Q4_K, "token_embd": GGMLQuantizationType.Q8_0}


def write_smollm2_as_qwen2(path: Path, chat_template: str | None = None) -> Path:
    """SmolLM2's weights as a qwen2-family GGUF (zero QKV biases, NEOX RoPE layout, tied
    embeddings, Q4_K_M-like types): a real-behaving model of the family most GGUFs come from."""
    from backends.local.gguf_file import load_gguf
    from backends.local.store import pull

    source = load_gguf(pull("smollm2"))
    c = source.config
    weights = dict(source.weights)
    for i in range(c.n_layers):
        for proj, heads in (("q", c.n_heads), ("k", c.n_kv_heads), ("v", c.n_kv_heads)):
            weights[f"model.layers.{i}.self_attn.{proj}_proj.bias"] = torch.zeros(heads * c.head_dim)
    cfg = {"model_type": "qwen2", "vocab_size": c.vocab_size, "hidden_size": c.dim, "num_hidden_layers": c.n_layers,
           "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "intermediate_size": c.ffn_dim,
           "max_position_embeddings": c.context_length, "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta,
           "tie_word_embeddings": True}

    def mix(name: str) -> GGMLQuantizationType | None:
        return next((kind for part, kind in Q4_K_M_LIKE.items() if f"{part}." in name), None)

    return write_gguf(path, cfg, weights, source.tokenizer.hf, quant=mix, chat_template=chat_template or source.chat_template or CHATML,
                      pre="smollm")


def build(tmp: Path, family: str, seed: int = 0, quant: GGMLQuantizationType | None = None) -> tuple[Path, Path, dict]:
    """(hf folder, gguf file, config) for a tiny model of `family`."""
    tokenizer = tiny_tokenizer()
    cfg = tiny_config(family, tokenizer.get_vocab_size(with_added_tokens=True))
    weights = random_weights(cfg, seed)
    folder = write_hf_folder(tmp / f"{family}-hf", cfg, weights, tokenizer)
    gguf = write_gguf(tmp / f"{family}.gguf", cfg, weights, tokenizer, quant=quant)
    return folder, gguf, cfg


__all__ = ["GGMLQuantizationType", "build", "quantize_q4_k", "write_smollm2_as_qwen2", "tiny_config", "tiny_tokenizer", "random_weights", "write_gguf", "write_hf_folder"]
