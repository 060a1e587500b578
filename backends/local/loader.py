"""Turns a model path into a ready Transformer plus its tokenizer and template."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from backends.local.checkpoint import Checkpoint
from backends.local.config import ModelConfig, ModelLoadError
from backends.local.gguf_file import load_gguf
from backends.local.hf_folder import load_hf_folder
from backends.local.model import Transformer
from backends.local.tokenizer import LocalTokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: Transformer
    tokenizer: LocalTokenizer
    chat_template: str | None
    config: ModelConfig
    name: str
    source: Path


def read_checkpoint(path: Path, dtype: torch.dtype = torch.float32) -> Checkpoint:
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and len(ggufs) == 1:
            return load_gguf(ggufs[0], dtype)
        return load_hf_folder(path, dtype)
    if path.suffix == ".gguf" or path.is_file():
        return load_gguf(path, dtype)
    raise ModelLoadError(f"{path}: no such model file or folder")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_model(path: Path, dtype: str | torch.dtype | None = None, device: str | torch.device | None = None) -> LoadedModel:
    device = torch.device(device) if device is not None else default_device()
    torch_dtype = resolve_dtype(dtype, device)
    checkpoint = read_checkpoint(path, torch_dtype)
    with torch.device("meta"):  # no random init: every parameter comes from the checkpoint
        model = Transformer(checkpoint.config)
    model.load_weights(checkpoint.weights)
    model = model.to(device).eval().requires_grad_(False)
    return LoadedModel(
        model=model,
        tokenizer=checkpoint.tokenizer,
        chat_template=checkpoint.chat_template,
        config=checkpoint.config,
        name=checkpoint.name,
        source=checkpoint.source,
    )
