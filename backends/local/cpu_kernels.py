"""Our CPU matmul kernels (cpu_kernels.cpp, cpu_kernels_body.h): int4, int5 and int8 weights in blocks of 32
times activations quantized in blocks of 32 to two int8 parts (about 15 bits), with integer dot products.

The C++ file is compiled once with the system's g++ into tokentrail's cache (keyed by the sources'
hash and the flags) and called through ctypes with tensors' data pointers. Its OpenMP threads are torch's own:
the library links libgomp.so.1, which torch has already loaded. Where there is no compiler, no
AVX2/FMA/F16C, or the build fails, `available()` is False with one warning saying why, and the
engine keeps torch's kernels.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

from backends.paths import home

BLOCK = 32
SOURCES = [Path(__file__).with_name(name)
           for name in ("cpu_kernels.cpp", "cpu_kernels_body.h", "cpu_attention.h", "cpu_decode.h")]
FLAGS = ["-O3", "-shared", "-fPIC", "-fopenmp", "-std=c++17"]


def _build_dir() -> Path:
    return Path(os.environ.get("TOKENTRAIL_KERNEL_CACHE", home() / "kernels"))


def _compile(out: Path) -> None:
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++) on PATH")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        built = Path(tmp) / out.name
        run = subprocess.run([compiler, *FLAGS, str(SOURCES[0]), "-o", str(built)], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {run.stderr.strip()[-500:]}")
        os.replace(built, out)  # whole or not at all: another process may be loading it


SETTINGS = ("auto", "tokentrail", "torch")


def setting() -> str:
    """TOKENTRAIL_CPU_KERNELS: auto (the default), tokentrail (ours wherever they run) or torch."""
    value = os.environ.get("TOKENTRAIL_CPU_KERNELS", "auto").strip().lower() or "auto"
    if value not in SETTINGS:
        raise ValueError(f"TOKENTRAIL_CPU_KERNELS={value!r} is not one of {', '.join(SETTINGS)}")
    return value


def chosen() -> str:
    """Whose kernels run quantized layers here: "tokentrail" or "torch". By default ours wherever they build:
    with them a decoding step is one call (cpu_decode.py): 1.4-1.9x torch's decode on AVX-512 and 2-3x on AVX2,
    for 10-35% of prefill speed on AVX-512, where torch's bfloat16 int4 kernel prefills faster; an agent's
    runs, mostly prefill, still took 13% less time (docs/engine.md has the measurements)."""
    if setting() == "torch":
        return "torch"
    return "tokentrail" if available() else "torch"


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (with one warning) where they cannot run here."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES) + " ".join(FLAGS).encode()).hexdigest()[:16]
    path = _build_dir() / f"cpu_kernels-{digest}.so"
    try:
        if not path.exists():
            _compile(path)
        lib = _declared(ctypes.CDLL(str(path)))
    except (OSError, RuntimeError) as e:
        warnings.warn(f"tokentrail's CPU kernels are off ({e}); torch's kernels run instead", stacklevel=2)
        return None
    if not lib.tt_cpu_ok():
        warnings.warn("this CPU lacks AVX2, FMA or F16C: tokentrail's CPU kernels are off; torch's kernels run instead",
                      stacklevel=2)
        return None
    _pick_instruction_set(lib)
    return lib


def _pick_instruction_set(lib: ctypes.CDLL) -> bool:
    """AVX-512 VNNI where torch runs its AVX-512 kernels too (ATEN_CPU_CAPABILITY=avx2 forces both to AVX2)."""
    return bool(lib.tt_use_vnni(int(torch.backends.cpu.get_cpu_capability() == "AVX512")))


def _declared(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Argument types for ctypes: pointers as addresses (int), sizes as int64, thread counts as int."""
    p, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    lib.tt_quantize_rows.argtypes = [p, i64, i64, p, p, p, i32]
    lib.tt_int4_matmul.argtypes = [p, p, p, p, p, p, i64, i64, p, i64, p, i32, p, f32]
    lib.tt_int8_matmul.argtypes = [p, p, i64, i64, p, i64, p, i32, p, f32]
    lib.tt_attend_one.argtypes = [p, p, p, i64, i64, p, p, i64, i64, i64, i64, f32, i64, p, i32]
    lib.tt_decode_layers.argtypes = [p, p, i64, p, p, p, p, i32]
    for f in (lib.tt_quantize_rows, lib.tt_int4_matmul, lib.tt_int8_matmul, lib.tt_attend_one, lib.tt_decode_layers):
        f.restype = None
    return lib


def instruction_set() -> str:
    """What our kernels run on here: "AVX-512 VNNI", "AVX2", or "off"."""
    lib = library()
    if lib is None:
        return "off"
    return "AVX-512 VNNI" if _pick_instruction_set(lib) else "AVX2"


def available() -> bool:
    return library() is not None


TILE = 4  # weight rows a tile (cpu_kernels.cpp)


def tile_(rows: Tensor, group_bytes: int) -> Tensor:
    """A weight's bytes [N, B], row by row, put in the kernels' order in place (and returned): tiles of 4 rows
    (the last holds what is left), each holding its rows' first `group_bytes` one row after another, then their
    next. A few megabytes at a time: a 233 MB head costs no second copy."""
    n, width = rows.shape
    groups = width // group_bytes
    step = max(1, (1 << 22) // max(width, 1) // TILE) * TILE
    for start in range(0, n, step):
        part = rows[start : start + step]
        size = part.shape[0]
        full = size - size % TILE
        reordered = torch.cat([part[:full].view(full // TILE, TILE, groups, group_bytes).transpose(1, 2).reshape(-1),
                               part[full:].view(size - full, groups, group_bytes).transpose(0, 1).reshape(-1)])
        part.view(-1).copy_(reordered)
    return rows


def tiled_rows(weight: Tensor, ids: Tensor, group_bytes: int) -> Tensor:
    """Rows `ids` of a weight in the kernels' order (`tile_`), row by row: [len(ids), B]."""
    n, width = weight.shape
    ids, full = ids.reshape(-1), n - n % TILE
    start = torch.where(ids < full, ids - ids % TILE, full)  # the row's tile
    rows_in_tile = torch.where(ids < full, TILE, n - full)
    at = ((start * width + (ids - start) * group_bytes)[:, None, None]
          + torch.arange(width // group_bytes)[None, :, None] * (rows_in_tile * group_bytes)[:, None, None]
          + torch.arange(group_bytes)[None, None, :])
    return weight.reshape(-1)[at].view(-1, width)


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


def address(t: Tensor | None) -> int | None:
    """A tensor's data pointer, or None (a null pointer for the C++ side) where there is no tensor."""
    return None if t is None else t.data_ptr()


def _checked(x: Tensor, k: int) -> Tensor:
    if x.dtype != torch.float32 or not x.is_contiguous() or x.dim() != 2 or x.shape[1] != k:
        raise ValueError(f"the kernels take contiguous float32 [M, {k}] activations, not {x.dtype} {tuple(x.shape)}")
    return x


def quantize_rows(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """float32 [M, K] -> (hi, lo int8 [M, K], d, s float32 [M, K/32]): per block of 32,
    x ~ d * (256 * hi + lo) and s = the block's sum of x. The matmuls do this themselves; here for tests."""
    lib = library()
    assert lib is not None
    m, k = _checked(x, x.shape[-1]).shape
    both = torch.empty(m, k // BLOCK, 2, BLOCK, dtype=torch.int8)
    d, s = torch.empty(m, k // BLOCK), torch.empty(m, k // BLOCK)
    lib.tt_quantize_rows(_ptr(x), m, k, _ptr(both), _ptr(d), _ptr(s), torch.get_num_threads())
    return both[:, :, 0].reshape(m, k), both[:, :, 1].reshape(m, k), d, s


def _norm_ptr(norm: Tensor | None, k: int) -> int | None:
    if norm is None:
        return None
    if norm.dtype != torch.float32 or not norm.is_contiguous() or norm.shape != (k,):
        raise ValueError(f"the kernels take an RMSNorm weight as contiguous float32 [{k}], not {norm.dtype} {tuple(norm.shape)}")
    return _ptr(norm)


def int4_matmul(nibbles: Tensor, scale: Tensor | None, mins: Tensor | None, x: Tensor, high: Tensor | None = None,
                norm: Tensor | None = None, eps: float = 0.0, codes: Tensor | None = None,
                supers: Tensor | None = None) -> Tensor:
    """x float32 [M, K] times int4 weights (nibbles uint8 [N, K/2] `tile_`d by 16 bytes, scale and mins float16
    [N, K/32]; layout in cpu_kernels.cpp), or int5 weights with `high` (uint8 [N, K/8] `tile_`d by 4, the fifth bits)
    -> float32 [M, N]. With `codes` (uint8 [N, 2 K/32]) and `supers` (float16 [N, 2 K/256]) instead of scale and mins,
    Q4_K's own scales (K a multiple of 256). With `norm`, x goes in RMS-normalized first: x * rsqrt(mean(x^2) + eps) * norm."""
    lib = library()
    assert lib is not None
    n, k = nibbles.shape[0], nibbles.shape[1] * 2
    if (codes is None) == (scale is None or mins is None):
        raise ValueError("int4_matmul takes scale and mins, or codes and supers")
    if codes is not None and (k % 256 or codes.shape != (n, k // 16) or supers is None or supers.shape != (n, k // 128)
                              or codes.dtype != torch.uint8 or supers.dtype != torch.float16):
        raise ValueError(f"Q4_K's scales for [{n}, {k}] are uint8 codes [{n}, {k // 16}] and float16 supers "
                         f"[{n}, {k // 128}], K a multiple of 256")
    y = torch.empty(x.shape[0], n)
    lib.tt_int4_matmul(_ptr(nibbles), address(high), address(scale), address(mins), address(codes), address(supers), n,
                       k, _ptr(_checked(x, k)), x.shape[0], _ptr(y), torch.get_num_threads(), _norm_ptr(norm, k), eps)
    return y


def int8_matmul(q: Tensor, d: Tensor, x: Tensor, norm: Tensor | None = None, eps: float = 0.0) -> Tensor:
    """x float32 [M, K] times int8 weights in blocks of 32 (q int8 [N, K] `tile_`d by 32, d float16 [N, K/32])
    -> float32 [M, N];
    `norm` as for int4_matmul."""
    lib = library()
    assert lib is not None
    n, k = q.shape
    y = torch.empty(x.shape[0], n)
    lib.tt_int8_matmul(_ptr(q), _ptr(d), n, k, _ptr(_checked(x, k)), x.shape[0], _ptr(y), torch.get_num_threads(),
                       _norm_ptr(norm, k), eps)
    return y


def attend_one(qkv: Tensor, k_cache: Tensor, v_cache: Tensor, position: int, cos: Tensor, sin: Tensor,
               scale: float | None = None, window: int = 0) -> Tensor:
    """One token's attention in one sequence (decoding): qkv float32 [h + 2 hkv, d], the token's query, key and
    value heads (its query and key heads are rotated in place); k_cache, v_cache float32 [hkv, capacity, d], where
    its key and value are written at `position`; cos, sin [rotary_dim] at that position (Hugging Face's halves).
    Returns float32 [h * d]: each query head's softmax(q k * scale) v over positions 0..position, or only the
    last `window` of them."""
    lib = library()
    assert lib is not None
    hkv, capacity, d = k_cache.shape
    h = qkv.shape[0] - 2 * hkv
    rot = cos.shape[-1]
    tensors = (qkv, k_cache, v_cache, cos, sin)
    if (any(t.dtype != torch.float32 or not t.is_contiguous() for t in tensors) or qkv.shape[1] != d
            or v_cache.shape != k_cache.shape or h <= 0 or h % hkv or not 0 <= position < capacity
            or sin.shape[-1] != rot or rot > d or rot % 2 or cos.numel() != rot or sin.numel() != rot):
        raise ValueError("attend_one takes contiguous float32 qkv [h + 2 hkv, d], caches [hkv, capacity, d] with "
                         f"position < capacity, cos and sin [rotary_dim <= d]; got {[tuple(t.shape) for t in tensors]}, "
                         f"{[t.dtype for t in tensors]}, position {position}")
    out = torch.empty(h * d)
    lib.tt_attend_one(_ptr(qkv), _ptr(k_cache), _ptr(v_cache), capacity, position, _ptr(cos), _ptr(sin), rot, h, hkv,
                      d, scale or d ** -0.5, window, _ptr(out), torch.get_num_threads())
    return out


# The same two matmuls as torch operators, for code that torch.compile traces (an opaque call
# instead of a graph break at ctypes); eager code calls the functions above, which skip the dispatcher.
@torch.library.custom_op("tokentrail::int4_matmul", mutates_args=())
def int4_matmul_op(nibbles: Tensor, scale: Tensor | None, mins: Tensor | None, x: Tensor, high: Tensor | None = None,
                   norm: Tensor | None = None, eps: float = 0.0, codes: Tensor | None = None,
                   supers: Tensor | None = None) -> Tensor:
    return int4_matmul(nibbles, scale, mins, x, high, norm, eps, codes, supers)


@int4_matmul_op.register_fake
def _(nibbles: Tensor, scale: Tensor | None, mins: Tensor | None, x: Tensor, high: Tensor | None = None,
      norm: Tensor | None = None, eps: float = 0.0, codes: Tensor | None = None, supers: Tensor | None = None) -> Tensor:
    return x.new_empty(x.shape[0], nibbles.shape[0])


@torch.library.custom_op("tokentrail::int8_matmul", mutates_args=())
def int8_matmul_op(q: Tensor, d: Tensor, x: Tensor, norm: Tensor | None = None, eps: float = 0.0) -> Tensor:
    return int8_matmul(q, d, x, norm, eps)


@int8_matmul_op.register_fake
def _(q: Tensor, d: Tensor, x: Tensor, norm: Tensor | None = None, eps: float = 0.0) -> Tensor:
    return x.new_empty(x.shape[0], q.shape[0])
