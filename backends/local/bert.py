"""A BERT encoder for sentence embeddings (all-MiniLM-L6-v2 and kin), loaded from safetensors.

Mean pooling over real tokens, then L2 normalization: what sentence-transformers does for
these models, without depending on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import Tensor, nn

from backends.local.config import ModelLoadError


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    ffn_dim: int
    max_positions: int
    type_vocab_size: int
    norm_eps: float


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.n_heads = c.n_heads
        self.qkv = nn.Linear(c.dim, 3 * c.dim)
        self.attn_out = nn.Linear(c.dim, c.dim)
        self.attn_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.up = nn.Linear(c.dim, c.ffn_dim)
        self.down = nn.Linear(c.ffn_dim, c.dim)
        self.ffn_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        x = self.attn_norm(x + self.attn_out(attended.transpose(1, 2).reshape(b, t, d)))
        return self.ffn_norm(x + self.down(F.gelu(self.up(x))))


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.word = nn.Embedding(config.vocab_size, config.dim)
        self.position = nn.Embedding(config.max_positions, config.dim)
        self.token_type = nn.Embedding(config.type_vocab_size, config.dim)
        self.norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.n_layers))

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.norm(self.word(ids) + self.position(positions)[None] + self.token_type(torch.zeros_like(ids)))
        for layer in self.layers:
            x = layer(x, mask)
        return x

    def load_hf(self, weights: dict[str, Tensor]) -> None:
        w = {k.removeprefix("bert."): v for k, v in weights.items()}
        state = {
            "word.weight": w["embeddings.word_embeddings.weight"],
            "position.weight": w["embeddings.position_embeddings.weight"],
            "token_type.weight": w["embeddings.token_type_embeddings.weight"],
            "norm.weight": w["embeddings.LayerNorm.weight"],
            "norm.bias": w["embeddings.LayerNorm.bias"],
        }
        for i in range(self.config.n_layers):
            p, o = f"encoder.layer.{i}.", f"layers.{i}."
            for part in ("weight", "bias"):
                state[o + "qkv." + part] = torch.cat([w[p + f"attention.self.{n}.{part}"] for n in ("query", "key", "value")])
                state[o + "attn_out." + part] = w[p + f"attention.output.dense.{part}"]
                state[o + "attn_norm." + part] = w[p + f"attention.output.LayerNorm.{part}"]
                state[o + "up." + part] = w[p + f"intermediate.dense.{part}"]
                state[o + "down." + part] = w[p + f"output.dense.{part}"]
                state[o + "ffn_norm." + part] = w[p + f"output.LayerNorm.{part}"]
        self.load_state_dict(state, strict=True, assign=True)


def native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (elsewhere bfloat16 is emulated, and slower)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private but long-standing torch.cpu probes
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


class SentenceEncoder:
    """Text in, unit-length float32 vectors out."""

    def __init__(self, folder: Path, max_length: int | None = None, bfloat16: bool | None = None) -> None:
        """bfloat16: run the encoder's matmuls in bfloat16 (default: when the CPU has native bfloat16
        instructions, AVX512-BF16 or AMX). Twice the chunks/s on such a CPU; each vector stays
        within 3e-5 cosine of float32's (measured on 600 chunks of the retrieval corpus)."""
        try:
            cfg = json.loads((folder / "config.json").read_text())
            config = BertConfig(
                vocab_size=cfg["vocab_size"], dim=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"],
                n_heads=cfg["num_attention_heads"], ffn_dim=cfg["intermediate_size"],
                max_positions=cfg["max_position_embeddings"], type_vocab_size=cfg.get("type_vocab_size", 2),
                norm_eps=cfg.get("layer_norm_eps", 1e-12),
            )
            weights = load_file(str(folder / "model.safetensors"))
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except (OSError, KeyError, json.JSONDecodeError, SafetensorError, Exception) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            raise ModelLoadError(f"{folder}: not a loadable BERT sentence-embedding folder ({problem})") from exc
        if cfg.get("model_type") != "bert":
            raise ModelLoadError(f"{folder}: model_type {cfg.get('model_type')!r} is not 'bert'")
        with torch.device("meta"):
            self.model = BertEncoder(config)
        self.model.load_hf({k: v.float() for k, v in weights.items() if "position_ids" not in k and "pooler" not in k})
        self.model.eval().requires_grad_(False)
        st_config = folder / "sentence_bert_config.json"
        default = json.loads(st_config.read_text()).get("max_seq_length", 256) if st_config.exists() else 256
        self.max_length = min(max_length or default, config.max_positions)
        self.tokenizer.no_padding()
        self._splitter = Tokenizer.from_str(self.tokenizer.to_str())  # whole texts, for chunking
        self._splitter.no_truncation()
        self.tokenizer.enable_truncation(self.max_length)
        self.dim = config.dim
        self.name = folder.name
        self.bfloat16 = native_bfloat16() if bfloat16 is None else bfloat16

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of each token of the whole text (no truncation)."""
        return [s for s in self._splitter.encode(text, add_special_tokens=False).offsets if s[1] > s[0]]

    @torch.inference_mode()
    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Similar lengths together: less padding per batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in index])
            width = max(len(e.ids) for e in encodings)
            ids = torch.zeros(len(index), width, dtype=torch.long)
            mask = torch.zeros(len(index), width, dtype=torch.bool)
            for row, e in enumerate(encodings):
                ids[row, : len(e.ids)] = torch.tensor(e.ids)
                mask[row, : len(e.ids)] = True
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
                hidden = self.model(ids, mask).float()
            summed = (hidden * mask[..., None]).sum(1)
            pooled = summed / mask.sum(1, keepdim=True).clamp(min=1)
            out[index] = F.normalize(pooled, dim=-1).numpy()
        return out
