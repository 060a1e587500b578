"""Function calling through `tokentrail serve` and the openai SDK: parsable rate and accuracy.

    .venv/bin/python benchmarks/function_calling.py [--code DIR] [--model PATH.gguf ...] [--cases N]

Our own set of cases in two categories, after the public benchmarks' simple and multiple
function ones: "simple" offers only the right tool, "multiple" offers it among three others.
Every request is tool_choice="required", temperature 0. A reply is parsable when the server
returns a tool call whose arguments are a JSON object; accurate when the tool is the right one
and every expected argument matches (strings case-insensitively, numbers by value).

Models: the default (SmolLM2, whose template knows no tools: the text fallback), SmolLM2's
weights under Qwen2.5's template (its native format, tags as text), and tiny random-weight
Qwen2.5 / Llama 3.1 / Mistral models whose tags are special tokens (accuracy there is chance;
parsability is the point). --code runs the server from another checkout (a "before").
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

S, N, INT = {"type": "string"}, {"type": "number"}, {"type": "integer"}


def fn(name: str, description: str, required: list[str], **properties: dict) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


TOOLS = [
    fn("get_weather", "Get the current weather in a city", ["city"], city=S,
       unit={"type": "string", "enum": ["celsius", "fahrenheit"]}),
    fn("convert_currency", "Convert an amount of money from one currency to another",
       ["amount", "from_currency", "to_currency"], amount=N, from_currency=S, to_currency=S),
    fn("calculate_bmi", "Body mass index from weight and height", ["weight_kg", "height_m"], weight_kg=N, height_m=N),
    fn("get_stock_price", "Latest price of a stock by its ticker symbol", ["ticker"], ticker=S),
    fn("set_timer", "Start a countdown timer", ["minutes"], minutes=INT),
    fn("translate", "Translate text into another language", ["text", "target_language"], text=S, target_language=S),
    fn("find_restaurants", "Find restaurants in a city serving a cuisine", ["city", "cuisine"], city=S, cuisine=S),
    fn("get_time", "Current local time in a city", ["city"], city=S),
]
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Denver", "Madrid", "Seoul", "Nairobi", "Toronto"]


def cases() -> list[dict]:
    """(question, tool, expected arguments) triples, ten per tool where the values allow."""
    out = []
    for i, city in enumerate(CITIES):
        unit = ["celsius", "fahrenheit"][i % 2]
        out.append((f"What's the weather like in {city} right now, in {unit}?", "get_weather", {"city": city, "unit": unit}))
        amount, pair = [20, 150, 75.5, 1000, 42, 9.99, 300, 12, 560, 88][i], [("USD", "EUR"), ("GBP", "JPY"),
                        ("EUR", "CHF"), ("CAD", "USD"), ("AUD", "NZD")][i % 5]
        out.append((f"Convert {amount} {pair[0]} to {pair[1]}.", "convert_currency",
                    {"amount": amount, "from_currency": pair[0], "to_currency": pair[1]}))
        weight, height = [70, 82, 55, 90, 64, 77, 101, 48, 68, 59][i], [1.75, 1.8, 1.6, 1.85, 1.7, 1.78, 1.9, 1.55, 1.72, 1.66][i]
        out.append((f"I weigh {weight} kg and I am {height} m tall. What is my BMI?", "calculate_bmi",
                    {"weight_kg": weight, "height_m": height}))
        ticker = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOG", "META", "NFLX", "INTC", "AMD"][i]
        out.append((f"What is the current stock price of {ticker}?", "get_stock_price", {"ticker": ticker}))
        minutes = [5, 10, 25, 3, 45, 15, 90, 1, 30, 7][i]
        out.append((f"Set a timer for {minutes} minutes.", "set_timer", {"minutes": minutes}))
        phrase, language = [("good morning", "Spanish"), ("thank you", "French"), ("where is the station", "German"),
                            ("I love books", "Italian"), ("see you soon", "Japanese")][i % 5]
        out.append((f'Translate "{phrase}" into {language}.', "translate", {"text": phrase, "target_language": language}))
        cuisine = ["Italian", "Thai", "Mexican", "Indian", "Japanese", "Greek", "Korean", "French", "Ethiopian", "Vegan"][i]
        out.append((f"Find {cuisine} restaurants in {city}.", "find_restaurants", {"city": city, "cuisine": cuisine}))
        out.append((f"What time is it in {city}?", "get_time", {"city": city}))
    return [{"question": q, "tool": t, "expected": e} for q, t, e in out]


def offered(case: dict, index: int, category: str) -> list[dict]:
    right = next(t for t in TOOLS if t["function"]["name"] == case["tool"])
    if category == "simple":
        return [right]
    others = [t for t in TOOLS if t is not right]
    picked = [others[(index + k * 3) % len(others)] for k in range(3)]
    return sorted([right, *picked], key=lambda t: t["function"]["name"])


def matches(expected: object, got: object) -> bool:
    if isinstance(expected, str):
        return isinstance(got, str) and got.strip().lower() == expected.lower()
    if isinstance(expected, (int, float)) and not isinstance(got, bool) and isinstance(got, (int, float)):
        return abs(float(got) - float(expected)) < 1e-6
    return False


def score(reply, case: dict) -> tuple[bool, bool]:
    """(parsable, accurate)"""
    calls = reply.choices[0].message.tool_calls or []
    if not calls:
        return False, False
    try:
        args = json.loads(calls[0].function.arguments)
    except json.JSONDecodeError:
        return False, False
    if not isinstance(args, dict):
        return False, False
    right = calls[0].function.name == case["tool"] and all(matches(v, args.get(k)) for k, v in case["expected"].items())
    return True, right


def serve(code: Path, model: Path | None) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "cli", "serve", "--port", str(port)] + (["--model", str(model)] if model else [])
    env = os.environ | {"PYTHONPATH": str(code)}
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: one nobody reads fills up and stops the server mid-run
    process = subprocess.Popen(command, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    import httpx

    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.seek(0)
            raise RuntimeError(f"the server did not start:\n{log.read()[-4000:]}")
        time.sleep(0.3)


def evaluate(code: Path, model: Path | None, limit: int) -> dict[str, tuple[int, int, int, int, int, float]]:
    import openai

    process, url = serve(code, model)
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=300)
    results = {}
    try:
        model_id = client.models.list().data[0].id
        for category in ("simple", "multiple"):
            parsable = accurate = errors = cut = 0
            start = time.perf_counter()
            chosen = cases()[:limit]
            for index, case in enumerate(chosen):
                try:
                    reply = client.chat.completions.create(
                        model=model_id, temperature=0, max_tokens=120, tool_choice="required",
                        messages=[{"role": "user", "content": case["question"]}], tools=offered(case, index, category))
                except openai.APIError as exc:
                    errors += 1
                    if errors == 1:
                        print(f"  first error ({category}): {str(exc)[:200]}", file=sys.stderr)
                    continue
                cut += reply.choices[0].finish_reason == "length"
                p, a = score(reply, case)
                parsable, accurate = parsable + p, accurate + a
            results[category] = (len(chosen), parsable, accurate, cut, errors, time.perf_counter() - start)
    finally:
        process.terminate()
        process.wait(timeout=10)
    return results


def models(tmp: Path, extra: list[Path]) -> list[tuple[str, Path | None]]:
    from tests.fixtures.chat_families import FAMILIES, build_chat_model, template
    from tests.fixtures.tiny_models import write_smollm2_as_qwen2

    out: list[tuple[str, Path | None]] = [("SmolLM2-135M (default, text fallback)", None),
                                          ("SmolLM2-135M under Qwen2.5's template",
                                           write_smollm2_as_qwen2(tmp / "smollm2-qwen.gguf", template("qwen2.5")))]
    out += [(f"tiny {name} (tags are tokens)", build_chat_model(tmp, name, context=8192)) for name in FAMILIES]
    return out + [(path.name, path) for path in extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose server runs (default: this one)")
    parser.add_argument("--model", type=Path, action="append", default=[])
    parser.add_argument("--cases", type=int, default=len(cases()), help=f"per category (of {len(cases())})")
    parser.add_argument("--only", default="", help="run only the models whose label contains this")
    args = parser.parse_args()
    print(f"server code: {args.code}\n")
    print("| model | category | cases | parsable | accurate | cut off at max_tokens | errors | seconds |\n"
          "|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in models(Path(tmp), args.model):
            if args.only not in label:
                continue
            for category, (n, parsable, accurate, cut, errors, seconds) in evaluate(args.code, path, args.cases).items():
                print(f"| {label} | {category} | {n} | {parsable / n:.0%} | {accurate / n:.0%} | {cut} | {errors} "
                      f"| {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
