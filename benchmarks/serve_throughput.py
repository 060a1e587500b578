"""Many clients at once: aggregate tokens/s, time to first token and per-stream speed from `tokentrail serve`.

    .venv/bin/python benchmarks/serve_throughput.py [--model smollm2] [--clients 1 2 4 8 16] [--tokens 128]
                                                    [--llama-server PATH]

For each number of clients the server runs in its own process with `--parallel` equal to it (and once
more with --parallel 1, the one-at-a-time engine; one client also on the widest server), every client
streams one chat completion of up to --tokens tokens (greedy, different prompts), and the table gives
the aggregate tokens/s over the wall time, time to first token p50 and p95, and the median stream's
tokens/s after its first token. With --llama-server (llama.cpp's `llama-server` binary) the same runs
go to it with the same GGUF, threads and --parallel; without, its rows are left out. The table names
the CPU; it is also written to benchmarks/results/serve_throughput.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import cpu_line  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
TOPICS = ["the sea", "a city at night", "an old clock", "a mountain road", "a library", "the first snow", "a lighthouse",
          "a train journey", "a market", "a garden", "the moon", "a bridge", "a violin", "a desert", "a river", "a forest"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int) -> subprocess.Popen:
    # The server's log goes to a file: a pipe nobody reads fills up (64 KB) and stops the server mid-run.
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise SystemExit(f"{command[0]} exited: {log.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{command[0]} did not start in 300 s")


def client(base: str, i: int, tokens: int, out: list) -> None:
    try:
        streamed(base, i, tokens, out)
    except Exception as exc:  # said in the table's place, not lost in a thread
        out.append(exc)


def streamed(base: str, i: int, tokens: int, out: list) -> None:
    model = httpx.get(f"{base}/models", timeout=10).json()["data"][0]["id"]
    body = {"model": model, "stream": True, "max_tokens": tokens, "temperature": 0,
            "messages": [{"role": "user", "content": f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}."}]}
    started, first, count = time.perf_counter(), None, 0
    with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            delta = json.loads(line[5:])["choices"][0].get("delta", {})
            if delta.get("content"):
                count += 1  # one content event a token (both servers stream token by token)
                first = first or time.perf_counter()
    end = time.perf_counter()
    speed = (count - 1) / (end - first) if first and count > 1 else 0.0
    out.append({"ttft": (first or end) - started, "tokens": count, "speed": speed})


def run(base: str, clients: int, tokens: int) -> dict:
    results: list[dict] = []
    threads = [threading.Thread(target=client, args=(base, i, tokens, results)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise SystemExit(f"{len(failed)} of {clients} clients failed: {failed[0]!r}")
    ttfts = sorted(r["ttft"] for r in results)
    return {"aggregate": sum(r["tokens"] for r in results) / wall, "ttft_p50": statistics.median(ttfts),
            "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
            "stream": statistics.median(r["speed"] for r in results), "tokens": sum(r["tokens"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--clients", nargs="*", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--llama-server", default=None, help="path to llama.cpp's llama-server binary")
    args = parser.parse_args()
    threads = str(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    tokentrail = str(Path(sys.executable).parent / "tokentrail")
    engines = {"tokentrail": lambda port, n: [tokentrail, "serve", "--port", str(port), "--model", args.model,
                                             "--parallel", str(n), "--no-embeddings", "--max-waiting", "256"]}
    if args.llama_server:
        from backends.local.model_cache import resolve

        gguf = str(resolve(args.model, auto_pull=False))
        engines["llama.cpp"] = lambda port, n: [args.llama_server, "-m", gguf, "--port", str(port), "-t", threads,
                                               "--parallel", str(n), "-c", str(2048 * n), "-cb"]
    rows = []
    for name, command in engines.items():
        for clients in args.clients:
            # one client also on the widest server: what a lone request pays there
            widest = {max(args.clients)} if clients == 1 else set()
            for parallel in sorted({1, clients} | widest) if name == "tokentrail" else [clients]:
                port = free_port()
                process = start(command(port, parallel), port)
                try:
                    run(f"http://127.0.0.1:{port}/v1", 1, 8)  # warm up: the first request pays for loading
                    rows.append((name, clients, parallel, run(f"http://127.0.0.1:{port}/v1", clients, args.tokens)))
                finally:
                    process.terminate()
                    process.wait(timeout=30)
    table = [f"Serving {args.model}, {args.tokens} tokens a client, greedy; {cpu_line()}", "",
             "| server | clients | --parallel | aggregate tok/s | TTFT p50 s | TTFT p95 s | per stream tok/s | tokens |",
             "|---|---|---|---|---|---|---|---|"]
    table += [f"| {name} | {clients} | {parallel} | {r['aggregate']:.1f} | {r['ttft_p50']:.2f} | {r['ttft_p95']:.2f} | "
              f"{r['stream']:.1f} | {r['tokens']} |" for name, clients, parallel, r in rows]
    if not args.llama_server:
        table.append("\nllama.cpp: not measured (pass --llama-server PATH; benchmarks/build_llama_server.sh builds one)")
    print("\n".join(table))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "serve_throughput.md").write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
