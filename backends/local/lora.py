"""LoRA adapters: a low-rank update beside a frozen projection, trained by `tokentrail train`.

y = base(x) + (dropout(x) @ A^T @ B^T) * alpha / rank, with A [rank, in] and B [out, rank]; B
starts at zero, so a new adapter changes nothing until it is trained. The base may be any of the
engine's linear layers (float, int4, int8, side by side), so one adapter serves both precisions.
Targets are the fused projections: "wqkv" (attention's query, key and value), "wo", "w13"
(feed-forward gate and up) and "w2". An adapter is saved as `adapter.safetensors` beside
`adapter_config.json`, which names the model it was trained on and the shapes it expects.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

TARGETS = ("wqkv", "wo", "w13", "w2")
WEIGHTS, CONFIG = "adapter.safetensors", "adapter_config.json"


class LoRAConfig(BaseModel):
    rank: int = Field(8, ge=1, le=256)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] = Field(default_factory=lambda: list(TARGETS))
    base_model: str = ""  # the model it was trained on: its name, hidden size and layer count
    hidden_size: int = 0
    n_layers: int = 0


class AdapterError(ValueError):
    pass


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Module, in_features: int, out_features: int, config: LoRAConfig) -> None:
        super().__init__()
        self.base, self.scale, self.enabled = base, config.alpha / config.rank, True
        self.lora_a = nn.Parameter(torch.empty(config.rank, in_features))
        self.lora_b = nn.Parameter(torch.zeros(out_features, config.rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if not self.enabled:
            return y
        update = (self.dropout(x.to(self.lora_a.dtype)) @ self.lora_a.T) @ self.lora_b.T
        return y + update.to(y.dtype) * self.scale


def _projections(model: nn.Module, targets: list[str]) -> Iterator[tuple[str, nn.Module, str]]:
    """(dotted name, parent module, attribute) of each targeted projection, layer by layer."""
    for i, layer in enumerate(model.layers):
        for part, names in (("attention", ("wqkv", "wo")), ("feed_forward", ("w13", "w2"))):
            for name in names:
                if name in targets:
                    yield f"layers.{i}.{part}.{name}", getattr(layer, part), name


def _features(model: nn.Module, name: str) -> tuple[int, int]:
    c = model.config
    qkv = (c.n_heads + 2 * c.n_kv_heads) * c.head_dim
    return {"wqkv": (c.dim, qkv), "wo": (c.n_heads * c.head_dim, c.dim), "w13": (c.dim, 2 * c.ffn_dim),
            "w2": (c.ffn_dim, c.dim)}[name]


def attach(model: nn.Module, config: LoRAConfig) -> list[nn.Parameter]:
    """Wraps the targeted projections of `model` (in place); returns the new trainable parameters."""
    unknown = sorted(set(config.targets) - set(TARGETS))
    if unknown:
        raise AdapterError(f"unknown LoRA targets {unknown}; choose among {', '.join(TARGETS)}")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise AdapterError("the model already has an adapter; load the base model again to use another")
    params = []
    for _, parent, name in _projections(model, config.targets):
        in_features, out_features = _features(model, name)
        wrapped = LoRALinear(getattr(parent, name), in_features, out_features, config).to(model.device)
        setattr(parent, name, wrapped)
        params += [wrapped.lora_a, wrapped.lora_b]
    model.snapshots.clear()  # keys and values computed without the adapter
    model.cached = []
    return params


def adapters(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: getattr(parent, attr) for name, parent, attr in _projections(model, list(TARGETS))
            if isinstance(getattr(parent, attr), LoRALinear)}


@contextmanager
def disabled(model: nn.Module) -> Iterator[None]:
    """The base model, adapters switched off (DPO's reference without a second copy)."""
    layers = adapters(model).values()
    for layer in layers:
        layer.enabled = False
    try:
        yield
    finally:
        for layer in layers:
            layer.enabled = True


def identity(model: nn.Module, name: str) -> dict[str, object]:
    return {"base_model": name, "hidden_size": model.config.dim, "n_layers": model.config.n_layers}


def save(model: nn.Module, folder: Path, config: LoRAConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{part}": getattr(layer, part).detach().float().contiguous()
               for name, layer in adapters(model).items() for part in ("lora_a", "lora_b")}
    save_file(tensors, str(folder / WEIGHTS))
    (folder / CONFIG).write_text(config.model_dump_json(indent=2))


def load(model: nn.Module, folder: str | Path, model_name: str) -> LoRAConfig:
    """Attaches the adapter saved in `folder` to `model`; refuses one trained on another model."""
    folder = Path(folder)
    try:
        config = LoRAConfig.model_validate(json.loads((folder / CONFIG).read_text()))
        tensors = load_file(str(folder / WEIGHTS))
    except FileNotFoundError as exc:
        raise AdapterError(f"{folder}: not an adapter folder (it needs {CONFIG} and {WEIGHTS})") from exc
    except Exception as exc:  # a bad JSON, a bad config, a truncated safetensors file
        raise AdapterError(f"{folder}: unreadable adapter ({type(exc).__name__}: {exc})") from exc
    mine = identity(model, model_name)
    theirs = {key: getattr(config, key) for key in mine}
    if (theirs["hidden_size"], theirs["n_layers"]) != (mine["hidden_size"], mine["n_layers"]):
        raise AdapterError(f"{folder} was trained on {theirs['base_model']} (hidden size {theirs['hidden_size']}, "
                           f"{theirs['n_layers']} layers); this model is {model_name} (hidden size {mine['hidden_size']}, "
                           f"{mine['n_layers']} layers). Load it onto the model it was trained on.")
    attach(model, config)
    layers = adapters(model)
    expected = {f"{name}.{part}" for name in layers for part in ("lora_a", "lora_b")}
    if set(tensors) != expected:
        raise AdapterError(f"{folder}: its tensors do not fit this model (missing {sorted(expected - set(tensors))[:3]}, "
                           f"unexpected {sorted(set(tensors) - expected)[:3]})")
    with torch.no_grad():
        for name, layer in layers.items():
            for part in ("lora_a", "lora_b"):
                value, target = tensors[f"{name}.{part}"], getattr(layer, part)
                if value.shape != target.shape:
                    raise AdapterError(f"{folder}: {name}.{part} is {tuple(value.shape)}, this model needs {tuple(target.shape)}")
                target.copy_(value)
    model.requires_grad_(False)
    return config
