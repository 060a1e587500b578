"""Models converted for the CPU kernels, kept on disk and memory-mapped on the next load.

Converting a GGUF file's blocks (int4 packing, int8 requantization) takes seconds; a model
loaded again skips it. The built Transformer is saved with `torch.save` and read back with
`torch.load(weights_only=True, mmap=True)`, which rebuilds only the engine's own classes
listed here, never runs other code, and leaves every tensor a page of the cache file until
it is read.

An entry is keyed by the source file's sha256, a hash of the converter's source files,
torch's version, the CPU kernels that packed it (ours or torch's, and the instruction set),
the precision and the dtype. An entry that does not load or does not match (truncated, another
version, another model) is removed and rebuilt, never trusted. Entries are written to a temporary file and renamed, so a full disk
leaves no partial entry (and the model still loads). `TOKENTRAIL_PACKED_CACHE=0` turns the
cache off; set to a folder, it keeps the entries there instead of under the tokentrail home.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from pathlib import Path

import torch
from gguf import GGMLQuantizationType
from torch import nn

from backends.local import block_linear, config, cpu_kernels, gguf_file, model, prefix_cache, quant, quant_layers
from backends.paths import home

_CONVERTER = (model, quant, quant_layers, block_linear, gguf_file, config, prefix_cache)  # what a cached entry was made by
_SAFE_CLASSES = [
    model.Transformer, model.Block, model.Attention, model.FeedForward, model.RMSNorm, model.KVCache,
    quant_layers.Int4Linear, quant_layers.Int8Linear, quant_layers.DenseLinear,
    quant_layers.OutputHead, quant_layers.ConcatLinear, quant_layers.GGUFRows,
    block_linear.BlockInt4Linear, block_linear.BlockInt5Linear, block_linear.BlockInt8Linear,
    prefix_cache.PrefixSnapshots, config.ModelConfig, config.RopeScaling, GGMLQuantizationType, nn.ModuleList, set,
]


def folder() -> Path | None:
    setting = os.environ.get("TOKENTRAIL_PACKED_CACHE", "")
    if setting.lower() in ("0", "off", "false", "no"):
        return None
    return Path(setting).expanduser() if setting else home() / "packed"


def file_sha256(path: Path, where: Path) -> str:
    """The file's sha256, remembered by path, size, inode and modification time (hashing 1 GB takes 0.6 s)."""
    stat = path.stat()
    stamp = f"{path.resolve()}:{stat.st_size}:{stat.st_ino}:{stat.st_mtime_ns}"
    index = where / "hashes.json"
    try:
        known = json.loads(index.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(stamp), str):
        return known[stamp]
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    known[stamp] = digest
    _write_atomically(index, json.dumps(known).encode())
    return digest


def entry_for(source: Path, precision: str, dtype: torch.dtype) -> Path | None:
    """Where the converted model of `source` is kept; None when the cache is off or cannot be used."""
    where = folder()
    if where is None or not source.is_file():
        return None
    try:
        where.mkdir(parents=True, exist_ok=True)
        sha = file_sha256(source, where)
    except OSError:
        return None
    converter = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in _CONVERTER)).hexdigest()
    parts = [sha, converter, torch.__version__, torch.backends.cpu.get_cpu_capability(), cpu_kernels.chosen(), precision,
             str(dtype)]
    return where / f"{sha[:16]}-{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:16]}.pt"


def load(entry: Path, expected: config.ModelConfig, file_rows: dict[str, quant_layers.GGUFRows]) -> model.Transformer | None:
    """The cached model, or None (a missing entry; a bad one is removed with a warning).

    file_rows: the source file's embedding and head rows by tensor name, views of its map: an
    entry does not hold a second copy of them."""
    if not entry.is_file():
        return None
    try:
        with torch.serialization.safe_globals(_SAFE_CLASSES):
            loaded = torch.load(entry, weights_only=True, mmap=True)
        if not isinstance(loaded, model.Transformer) or loaded.config != expected:
            raise ValueError("it holds another model")
        for rows in _file_rows(loaded):
            rows.raw = file_rows[rows.tensor_name].raw
        return loaded
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, it is rebuilt
        reason = ("it holds objects other than a converted model" if isinstance(exc, pickle.UnpicklingError)
                  else f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}")
        warnings.warn(f"the converted model {entry} could not be used ({reason}); converting the file again",
                      RuntimeWarning, stacklevel=3)
        entry.unlink(missing_ok=True)
        return None


def save(entry: Path, built: model.Transformer) -> None:
    """Writes the entry whole or not at all, and drops this file's entries made by other versions."""
    temporary = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    rows = _file_rows(built)
    views = [r.raw for r in rows]
    try:
        for r in rows:
            r.raw = torch.empty(0, r.raw.shape[1], dtype=torch.uint8)  # read from the source file again on load
        torch.save(built, temporary)
        os.replace(temporary, entry)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        warnings.warn(f"could not keep the converted model in {entry.parent} ({exc}); the next load converts "
                      "the file again", RuntimeWarning, stacklevel=3)
        return
    finally:
        for r, view in zip(rows, views):
            r.raw = view
    for old in entry.parent.glob(entry.name.split("-")[0] + "-*.pt"):
        if old != entry:
            old.unlink(missing_ok=True)


def _file_rows(built: nn.Module) -> list[quant_layers.GGUFRows]:
    return [m for m in built.modules() if isinstance(m, quant_layers.GGUFRows)]


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
