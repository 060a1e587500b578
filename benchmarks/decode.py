"""Load time, prefill and decode speed, and memory: ours beside transformers and llama.cpp.

    .venv/bin/python benchmarks/decode.py [--pulled NAME ...] [--model PATH.gguf ...] [--kernels avx2]
                                          [--repeats 3] [--compile] [--no-agent] [--llama-bench PATH]

Models: SmolLM2-135M-Instruct Q4_1 (pulled), a qwen2-family Q4_K_M-like file built from
SmolLM2's weights (tests/fixtures/tiny_models.py), pulled models named by --pulled
(qwen2.5-coder-0.5b, qwen2.5-coder-1.5b: a real Q4_K_M) and any --model you pass. Each engine
runs in its own process (peak memory is per process) on the same GGUF, the same token ids, the
same number of threads, greedy. tokentrail fast loads twice: first (the converted model is
written to an empty cache folder) and cached (mapped from it); a second fast row runs the other set
of CPU kernels (ours or torch's, docs/engine.md). The table names the CPU;
--kernels avx2 forces the AVX2 kernels on an AVX-512 machine (ATEN_CPU_CAPABILITY); llama.cpp
keeps the instruction set it was compiled for, so --llama-cpp-path DIR points at an AVX2-only build
(CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF"
pip install --target DIR llama-cpp-python). transformers (pip install -e ".[goldens]") and llama-cpp-python (pip
install llama-cpp-python: it compiles llama.cpp, about 40 minutes on two cores) are optional
peers: their rows appear when they are installed; --llama-bench adds a row from llama.cpp's own
llama-bench (benchmarks/build_llama_server.sh builds it). Then the agent: one `tokentrail run` task,
each model call's prefill with the cache cold and with its prefix reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NEW_TOKENS = 64
Run = Callable[[list[int], int], tuple[float, float]]  # (prompt ids, new tokens) -> (prefill s, decode s)


def rss_mb(field: str = "VmRSS") -> float:
    """Resident MB now (VmRSS) or at the peak (VmHWM; unlike ru_maxrss, not inherited across exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def prompt_ids(path: Path, n: int = 500) -> list[int]:
    from pydoc_data.topics import topics

    from backends.local.gguf_file import load_gguf

    text = "\n\n".join(topics[name] for name in ("execmodel", "exceptions", "naming"))
    return load_gguf(path, quantized=True).tokenizer.encode(text)[:n]


def ours(path: Path, precision: str, compile: bool) -> Run:
    import torch

    from backends.local.backend import LocalBackend
    from backends.local.decode_loop import decode

    backend = LocalBackend(model=str(path), precision=precision, compile=compile)
    model = backend.loaded.model

    def pick(logits: torch.Tensor) -> tuple[int, torch.Tensor]:
        return int(logits.argmax()), logits

    def run(ids: list[int], new: int) -> tuple[float, float]:
        model.cached = []  # every run starts cold: this measures prefill, not prefix reuse
        start = time.perf_counter()
        steps = decode(model, ids, pick, new)
        next(steps)
        first = time.perf_counter()
        for _ in steps:
            pass
        return first - start, time.perf_counter() - first

    return run


def transformers_cache_loop(path: Path) -> Run:
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()

    @torch.inference_mode()
    def run(ids: list[int], new: int) -> tuple[float, float]:
        start = time.perf_counter()
        out = model(torch.tensor([ids]), past_key_values=DynamicCache(), use_cache=True)
        token = out.logits[0, -1].argmax().view(1, 1)
        first = time.perf_counter()
        for _ in range(new - 1):
            out = model(token, past_key_values=out.past_key_values, use_cache=True)
            token = out.logits[0, -1].argmax().view(1, 1)
        return first - start, time.perf_counter() - first

    return run


def llama_cpp(path: Path, threads: int) -> Run:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)

    def run(ids: list[int], new: int) -> tuple[float, float]:
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        first = time.perf_counter()
        for _ in range(new - 1):
            llm.eval([llm.sample(temp=0.0)])
        return first - start, time.perf_counter() - first

    return run


def worker(engine: str, path: Path, ids: list[int], repeats: int, timings: bool = True) -> dict[str, float]:
    """Runs in a process of its own: load, then best-of-`repeats` timings, then peak memory."""
    import torch

    threads = torch.get_num_threads()
    package = {"tokentrail": "backends.local.backend", "transformers": "transformers", "llama.cpp": "llama_cpp"}
    __import__(package[engine.split()[0]])  # its code is not the model's memory
    base = rss_mb()
    start = time.perf_counter()
    if engine.startswith("tokentrail"):
        precision = engine.split()[1].rstrip(",")
        run = ours(path, precision.removesuffix("+compile"), precision.endswith("+compile"))
    elif engine.startswith("transformers"):
        run = transformers_cache_loop(path)
    else:
        run = llama_cpp(path, threads)
    result = {"load_s": time.perf_counter() - start, "base_mb": base, "after_mb": rss_mb(), "peak_mb": rss_mb("VmHWM")}
    if engine == "llama.cpp":  # the instruction sets it was compiled for
        from llama_cpp import llama_print_system_info

        info = llama_print_system_info().decode()
        result["build"] = ", ".join(f.split("=")[0].strip() for f in info.split("|") if f.strip().endswith("= 1"))
    if not timings:
        return result
    run(ids[:8], 4)  # warm-up (and the compilation, with --compile)
    for n in (50, 500):
        result[f"prefill{n}"] = max(n / run(ids[:n], 2)[0] for _ in range(repeats))
    result["decode"] = max((NEW_TOKENS - 1) / run(ids[:50], NEW_TOKENS)[1] for _ in range(repeats))
    return result


def llama_bench_row(binary: Path, path: Path, repeats: int) -> str:
    """llama.cpp's own benchmark on the same file and threads: prefill 50 and 500, decode NEW_TOKENS (mean of repeats)."""
    import torch

    cmd = [str(binary), "-m", str(path), "-t", str(torch.get_num_threads()), "-p", "50,500", "-n", str(NEW_TOKENS),
           "-r", str(repeats), "-o", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return f"{'llama.cpp (llama-bench)':32} failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}"
    speed = {(t["n_prompt"], t["n_gen"]): t["avg_ts"] for t in json.loads(proc.stdout)}
    return (f"{'llama.cpp (llama-bench)':32} {'-':>7} {'-':>8} {speed[(50, 0)]:10.1f} {speed[(500, 0)]:11.1f} "
            f"{speed[(0, NEW_TOKENS)]:7.1f} {'-':>8} {'-':>8} {'-':>8}  ({binary})")


def in_process(engine: str, path: Path, ids: str, repeats: int, env: dict[str, str], timings: bool = True
               ) -> dict[str, float] | str:
    """The worker's result, or the last line of its error."""
    cmd = [sys.executable, __file__, "--worker", engine, str(path), ids, "--repeats", str(repeats)]
    proc = subprocess.run(cmd + ([] if timings else ["--load-only"]), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1])


OTHER_KERNELS = {"tokentrail fast, torch's kernels": "torch", "tokentrail fast, tokentrail's kernels": "tokentrail"}


def engines(compile: bool) -> list[str]:
    """Fast mode on the kernels it picks here, then on the other set where that runs here too."""
    import importlib.util

    from backends.local import cpu_kernels

    default = cpu_kernels.chosen()
    others = [k for k in ("torch", "tokentrail") if default != k and (k == "torch" or cpu_kernels.available())]
    names = ["tokentrail fast"] + [label for label, kernels in OTHER_KERNELS.items() if kernels in others]
    names += ["tokentrail exact"] + (["tokentrail fast+compile"] if compile else [])
    if importlib.util.find_spec("transformers"):
        names.append("transformers cache loop (fp32)")
    if importlib.util.find_spec("llama_cpp"):
        names.append("llama.cpp")
    return names


def agent_prefill() -> list[tuple[int, int, float]]:
    """(prompt tokens, of them reused, seconds to the first token) for each model call of one agent task, twice."""
    from agent import Agent
    from backends.local.backend import LocalBackend
    from tools import ToolRegistry

    calls: list[tuple[int, int, float]] = []

    class Timed(LocalBackend):
        def stream(self, request):  # type: ignore[no-untyped-def]
            start, first = time.perf_counter(), True
            for event in super().stream(request):
                if first:
                    calls.append((self.count_prompt(request), event.cached_prompt_tokens or 0, time.perf_counter() - start))
                    first = False
                yield event

    agent = Agent(Timed(), tools=ToolRegistry.with_builtins(workspace=tempfile.mkdtemp()))
    for _ in range(2):
        result = agent.run("What is 123 * 457? Use the calculator.")
        calls.append((-1, 0, float(result.answer.count("56211"))))  # a separator row: did it answer?
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", type=Path, default=[], help="a GGUF file to measure too")
    parser.add_argument("--pulled", action="append", default=[], help="a pulled model's name to measure too")
    parser.add_argument("--kernels", choices=["avx2", "avx512", "default"], default=None,
                        help="force torch's CPU kernels (ATEN_CPU_CAPABILITY) in every worker")
    parser.add_argument("--llama-cpp-path", type=Path, default=None,
                        help="a folder holding another build of llama_cpp (pip install --target DIR ...), e.g. an AVX2 one")
    parser.add_argument("--llama-bench", type=Path, default=None,
                        help="llama.cpp's llama-bench binary (benchmarks/build_llama_server.sh builds it): a row from it")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure fast mode with torch.compile")
    parser.add_argument("--no-agent", action="store_true", help="skip the agent's prefill table")
    parser.add_argument("--no-builtin", action="store_true", help="only the models named by --pulled and --model")
    parser.add_argument("--worker", nargs=3, metavar=("ENGINE", "PATH", "IDS"), help=argparse.SUPPRESS)
    parser.add_argument("--load-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        engine, path, ids = args.worker
        print(json.dumps(worker(engine, Path(path), json.loads(ids), args.repeats, timings=not args.load_only)))
        return
    if args.kernels:
        os.environ["ATEN_CPU_CAPABILITY"] = args.kernels

    from backends.local.model_cache import model_path, pull
    from benchmarks.machine import cpu_line
    from tests.fixtures.tiny_models import write_smollm2_as_qwen2

    models: dict[str, Path] = {}
    if not args.no_builtin:
        qwen2 = write_smollm2_as_qwen2(Path(tempfile.mkdtemp()) / "smollm2-as-qwen2-q4_k_m.gguf")
        models = {"SmolLM2-135M Q4_1": pull("smollm2"), "qwen2-family Q4_K_M-like (SmolLM2 weights)": qwen2}
    models |= {name: model_path(name) for name in args.pulled} | {path.name: path for path in args.model}
    print(f"CPU: {cpu_line()}")
    print(f"batch 1, greedy, {NEW_TOKENS} new tokens after the 50-token prompt, best of {args.repeats}; "
          "memory: resident MB of the process (base: after importing the engine, before loading)\n")
    header = (f"{'engine':32} {'load s':>7} {'cached s':>8} {'prefill 50':>10} {'prefill 500':>11} {'decode':>7} "
              f"{'base MB':>8} {'peak MB':>8} {'after MB':>8}")
    for label, path in models.items():
        print(f"{label}: {path.name}, {path.stat().st_size / 2**20:.0f} MB file (tokens/s)\n{header}")
        ids = json.dumps(prompt_ids(path))
        for engine in engines(args.compile):
            env = os.environ | {"TOKENTRAIL_PACKED_CACHE": tempfile.mkdtemp(prefix="packed-")}
            if engine in OTHER_KERNELS:
                env["TOKENTRAIL_CPU_KERNELS"] = OTHER_KERNELS[engine]
            if engine == "llama.cpp" and args.llama_cpp_path:
                env["PYTHONPATH"] = os.pathsep.join([str(args.llama_cpp_path), env.get("PYTHONPATH", "")])
            first = in_process(engine, path, ids, args.repeats, env, timings=False)
            r = in_process(engine, path, ids, args.repeats, env)
            if isinstance(r, str) or isinstance(first, str):
                print(f"{engine:32} failed: {r if isinstance(r, str) else first}")
                continue
            cached = f"{r['load_s']:8.2f}" if engine.startswith("tokentrail fast") else f"{'-':>8}"
            engine = engine.replace("tokentrail fast, ", "  same, ")
            print(f"{engine:32} {first['load_s']:7.2f} {cached} {r['prefill50']:10.1f} {r['prefill500']:11.1f} "
                  f"{r['decode']:7.1f} {first['base_mb']:8.0f} {first['peak_mb']:8.0f} {first['after_mb']:8.0f}"
                  + (f"  ({r['build']})" if "build" in r else ""))
        if args.llama_bench:
            print(llama_bench_row(args.llama_bench, path, args.repeats))
        print()
    if args.no_agent:
        return

    print("agent: `tokentrail run \"What is 123 * 457? Use the calculator.\"` on SmolLM2 fast, run twice in one process")
    print(f"{'call':>4} {'prompt tokens':>13} {'reused':>7} {'first token s':>14}")
    for i, (tokens, reused, seconds) in enumerate(agent_prefill(), start=1):
        if tokens < 0:
            print(f"---- run ended, answered 56211: {bool(seconds)}")
        else:
            print(f"{i:4} {tokens:13} {reused:7} {seconds:14.3f}")


if __name__ == "__main__":
    main()
