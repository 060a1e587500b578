"""A lean GGUF reader: metadata as plain values, tensors as views into a memory map.

The `gguf` package's reader builds a Python object for every part of every field (about
150,000 for a 49k vocabulary, 3 s); this one reads the header once, string arrays as lists
and numeric arrays as NumPy arrays, and never copies tensor data. Every length and offset
is checked against the file's size: model files are untrusted input.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from backends.local.config import ModelLoadError

_SCALARS: dict[int, tuple[str, type[np.generic]]] = {
    0: ("<B", np.uint8), 1: ("<b", np.int8), 2: ("<H", np.uint16), 3: ("<h", np.int16),
    4: ("<I", np.uint32), 5: ("<i", np.int32), 6: ("<f", np.float32), 7: ("<?", np.bool_),
    10: ("<Q", np.uint64), 11: ("<q", np.int64), 12: ("<d", np.float64),
}
_STRING, _ARRAY = 8, 9
_MAX_DIMS = 4


class _Truncated(Exception):
    pass


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # PyTorch order: rows first
    type: GGMLQuantizationType
    offset: int  # absolute, in the file
    nbytes: int


class _Cursor:
    def __init__(self, buffer: memoryview) -> None:
        self.buffer, self.pos = buffer, 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buffer):
            raise _Truncated
        view = self.buffer[self.pos : self.pos + n]
        self.pos += n
        return view

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return bytes(self.take(self.scalar("<Q"))).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind][0])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.scalar("<I"), self.scalar("<Q")
            if item == _STRING:
                if count > len(self.buffer) // 8:
                    raise _Truncated
                return [self.string() for _ in range(count)]
            if item in _SCALARS:
                dtype = np.dtype(_SCALARS[item][1]).newbyteorder("<")
                return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype).copy()
            raise ValueError(f"unsupported array item type {item}")
        raise ValueError(f"unsupported value type {kind}")


class GGUFFile:
    """Metadata (`fields`) and tensor descriptions (`tensors`) of one GGUF file, tensor bytes on demand."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such model file")
        self.path = path
        with path.open("rb") as f:
            try:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError as exc:  # an empty file cannot be mapped
                raise ModelLoadError(f"{path}: not a readable GGUF file, it is empty or truncated") from exc
        try:
            self._parse(_Cursor(memoryview(self._map)))
        except _Truncated as exc:
            raise ModelLoadError(f"{path}: not a readable GGUF file, it is truncated or corrupt") from exc
        except (ValueError, struct.error) as exc:
            raise ModelLoadError(f"{path}: not a readable GGUF file, it may be truncated or corrupt ({exc})") from exc

    def _parse(self, cur: _Cursor) -> None:
        if bytes(cur.take(4)) != b"GGUF":
            raise ValueError("the file does not start with the GGUF magic bytes")
        version = cur.scalar("<I")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not supported (2 and 3 are); a big-endian file is not either")
        n_tensors, n_fields = cur.scalar("<Q"), cur.scalar("<Q")
        if n_tensors > len(cur.buffer) // 24 or n_fields > len(cur.buffer) // 12:
            raise _Truncated
        self.fields: dict[str, Any] = {}
        for _ in range(n_fields):
            key = cur.string()
            self.fields[key] = cur.value(cur.scalar("<I"))
        infos = []
        for _ in range(n_tensors):
            name, n_dims = cur.string(), cur.scalar("<I")
            if n_dims > _MAX_DIMS:
                raise ValueError(f"tensor {name} has {n_dims} dimensions")
            dims = [cur.scalar("<Q") for _ in range(n_dims)]
            kind, offset = cur.scalar("<I"), cur.scalar("<Q")
            infos.append((name, dims, kind, offset))
        alignment = int(self.fields.get("general.alignment", 32))
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"general.alignment {alignment} is not a power of two")
        data_start = -(-cur.pos // alignment) * alignment
        self.tensors: dict[str, TensorInfo] = {}
        for name, dims, kind, offset in infos:
            self.tensors[name] = self._tensor_info(name, dims, kind, data_start + offset)

    def _tensor_info(self, name: str, dims: list[int], kind: int, offset: int) -> TensorInfo:
        try:
            qtype = GGMLQuantizationType(kind)
        except ValueError:
            raise ModelLoadError(f"{self.path}: tensor {name} has an unknown type ({kind})") from None
        block, type_size = GGML_QUANT_SIZES[qtype]
        count = int(np.prod(dims, dtype=np.uint64)) if dims else 1
        if not dims or dims[0] % block:
            raise ValueError(f"tensor {name}: rows of {dims[0] if dims else 0} values do not fill {qtype.name} blocks of {block}")
        nbytes = count // block * type_size
        if offset + nbytes > len(self._map):
            raise ModelLoadError(f"{self.path}: tensor {name}'s data ({nbytes} bytes at {offset}) runs past the end of "
                                 f"the file ({len(self._map)} bytes): the file is truncated or corrupt; download it again")
        return TensorInfo(name, tuple(int(d) for d in reversed(dims)), qtype, offset, nbytes)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def require(self, key: str) -> Any:
        value = self.fields.get(key)
        if value is None:
            raise ModelLoadError(f"{self.path}: GGUF metadata lacks {key!r}")
        return value

    def raw(self, info: TensorInfo) -> np.ndarray:
        """The tensor's bytes as a read-only uint8 view of the map, one row per tensor row."""
        data = np.frombuffer(self._map, dtype=np.uint8, count=info.nbytes, offset=info.offset)
        return data.reshape(info.shape[0] if len(info.shape) > 1 else 1, -1)

    def release(self, info: TensorInfo, first_row: int = 0, end_row: int | None = None) -> None:
        """Tells the kernel the pages of the tensor's rows first_row..end_row (all by default) may leave
        memory: they are converted and no longer read."""
        row_bytes = info.nbytes // (info.shape[0] if len(info.shape) > 1 else 1)
        end = info.offset + (info.nbytes if end_row is None else min(info.nbytes, end_row * row_bytes))
        page = mmap.PAGESIZE
        start = (info.offset + first_row * row_bytes) // page * page
        try:
            self._map.madvise(mmap.MADV_DONTNEED, start, end - start)
        except (AttributeError, OSError, ValueError):
            pass  # an optimisation only

    def close(self) -> None:
        try:
            self._map.close()
        except BufferError:
            pass  # a view is still alive (a dense tensor kept zero-copy); the map closes with it
