"""Turns a model path into a ready Transformer plus its tokenizer and template.

Precision: "exact" expands every weight to float (token-exact against transformers);
"fast" keeps GGUF weights quantized (int4 groups or int8 rows, see quant.py), the default
on CPUs with AVX2 or AVX-512, and keeps the converted model on disk for the next load
(packed_cache.py); "int8" and "int4" also quantize float weights at load (a
safetensors folder, an F16 GGUF). On CUDA the quantized CPU kernels do not apply: weights
are expanded to bfloat16.
"""

from __future__ import annotations

import ctypes
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from backends.local import packed_cache
from backends.local.block_linear import int8_blocks
from backends.local.checkpoint import Checkpoint
from backends.local.config import ModelConfig, ModelLoadError, check_precision
from backends.local.gguf_file import load_gguf
from backends.local.hf_folder import load_hf_folder
from backends.local.model import Transformer
from backends.local.quant import Deferred, LoadSummary, Weight, int4_fits, int4_groups, int8_rows, ours
from backends.local.quant_layers import GGUFRows
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
    precision: str = "exact"
    summary: LoadSummary = field(default_factory=LoadSummary)


def read_checkpoint(path: Path, dtype: torch.dtype = torch.float32, quantized: bool = False) -> Checkpoint:
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and len(ggufs) == 1:
            return load_gguf(ggufs[0], dtype, quantized)
        return load_hf_folder(path, dtype)
    if path.suffix == ".gguf" or path.is_file():
        return load_gguf(path, dtype, quantized)
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


def cpu_has_quantized_kernels() -> bool:
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """The precision a load runs at: `precision` (default "fast"), or "exact" where no quantized kernel runs."""
    precision = check_precision(precision or "fast")
    if precision == "exact" or device.type == "cuda":
        return "exact"
    if device.type != "cpu" or not cpu_has_quantized_kernels():
        capability = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else device.type
        warnings.warn(f"precision {precision!r} needs a CPU with AVX2 or AVX-512 (this one: {capability}); "
                      "running exact (float32) instead", RuntimeWarning, stacklevel=3)
        return "exact"
    return precision


def _quantize_floats(weights: dict[str, Weight | Deferred], precision: str, summary: LoadSummary) -> None:
    """On request ("int8"/"int4"): the float projection and embedding matrices, quantized in place."""
    for name, w in weights.items():
        floating = w.floating if isinstance(w, Deferred) else isinstance(w, torch.Tensor) and w.is_floating_point()
        if not floating or len(w.shape) != 2 or not name.endswith(".weight") or "norm" in name:
            continue
        head = name in ("lm_head.weight", "model.embed_tokens.weight")
        if precision == "int4" and not head and int4_fits(tuple(w.shape)):
            quantize, kind = int4_groups, "int4"
        elif ours():  # the head and embeddings stay int8: rows are looked up, top logits refined
            quantize, kind = int8_blocks, "int8"
        else:
            quantize, kind = int8_rows, "int8"
        weights[name] = w.then(quantize) if isinstance(w, Deferred) else quantize(w)
        summary.add(kind, name)


def _return_freed_memory() -> None:
    """glibc keeps the heap pages that the load's temporaries freed (a third of fast mode's
    resident size on SmolLM2); hand them back to the system."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # musl and other C libraries: nothing to trim
            pass


def load_model(
    path: Path,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    precision: str = "exact",
) -> LoadedModel:
    device = torch.device(device) if device is not None else default_device()
    torch_dtype = resolve_dtype(dtype, device)
    precision = resolve_precision(precision, device)
    checkpoint = read_checkpoint(path, torch_dtype, quantized=precision != "exact")
    if precision in ("int8", "int4"):
        _quantize_floats(checkpoint.weights, precision, checkpoint.summary)
    cached = packed_cache.entry_for(checkpoint.source, precision, torch_dtype) if precision != "exact" else None
    rows = {w.tensor_name: w for w in checkpoint.weights.values() if isinstance(w, GGUFRows)}
    model = packed_cache.load(cached, checkpoint.config, rows) if cached else None
    if model is None:
        model = Transformer(checkpoint.config, checkpoint.weights, torch_dtype)
        model = model.to(device).eval().requires_grad_(False)
        if cached:
            packed_cache.save(cached, model)
    checkpoint.weights.clear()
    _return_freed_memory()
    return LoadedModel(
        model=model,
        tokenizer=checkpoint.tokenizer,
        chat_template=checkpoint.chat_template,
        config=checkpoint.config,
        name=checkpoint.name,
        source=checkpoint.source,
        precision=precision,
        summary=checkpoint.summary,
    )
