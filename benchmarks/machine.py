"""The machine a benchmark table comes from: every table names its CPU, its vector extensions and threads."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_line() -> str:
    """e.g. "AMD EPYC; AVX2 yes, AVX-512 yes (BF16, VNNI), AMX no; torch kernels AVX512, tokentrail kernels
    AVX-512 VNNI (fast mode runs tokentrail's); 2 threads"."""
    import torch

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    name = " ".join(lines.get("model name\t", lines.get("model name", "unknown CPU")).split())
    flags = set(lines.get("flags\t\t", lines.get("flags", "")).split())
    extras = [label for flag, label in (("avx512_bf16", "BF16"), ("avx512_vnni", "VNNI")) if flag in flags]
    avx512 = "yes" + (f" ({', '.join(extras)})" if extras else "") if "avx512f" in flags else "no"
    amx = "yes" if "amx_tile" in flags else "no"
    from backends.local import cpu_kernels

    kernels = torch.backends.cpu.get_cpu_capability()
    setting = os.environ.get("ATEN_CPU_CAPABILITY")
    forced = f" (forced by ATEN_CPU_CAPABILITY={setting})" if setting else ""
    return (f"{name}; AVX2 {'yes' if 'avx2' in flags else 'no'}, AVX-512 {avx512}, AMX {amx}; "
            f"torch kernels {kernels}{forced}, tokentrail kernels {cpu_kernels.instruction_set()} "
            f"(fast mode runs {cpu_kernels.chosen()}'s); {torch.get_num_threads()} threads")
