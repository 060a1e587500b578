"""Agent quality on the default model: success rate on 36 tasks with checkable answers.

    .venv/bin/python benchmarks/agent_eval.py [--limit N] [--every N] [--only react|agent|native|plain|smolagents]
        [--model M]
        [--adapter DIR ...]

Ways to run the same model on the same tasks, tools, memory and workspace:
  react   a single unconstrained ReAct-style loop: the model writes tool calls as text,
          which are parsed and repaired; no plan, no verification
  agent   our plan -> act -> verify loop with grammar-constrained plans, calls (the JSON act
          schema) and verdicts
  native  our agent with the model's own tool-call format (only for a model whose chat template
          has one, e.g. --model qwen2.5-coder-0.5b): the tool conversation, no plan
  plain   the tool loop a user writes in twenty lines (plain_loop), on the same backend (a model
          with its own tool format only)
  smolagents  a peer: smolagents' ToolCallingAgent (pip install smolagents; a benchmark-only
          dependency) on the same model through `tokentrail serve`, with the same tools; it
          recalls notes only through the recall tool, where our agent also recalls before planning
A task succeeds when the final answer gives the expected number (among its numbers) or words
(whole words, case aside). Printed per way: tasks solved by group, tool calls that ran without
error, wrong answers that verification passed (agent ways only), and wall time. With --adapter
(repeatable), each way runs on the model alone and then with each LoRA adapter, in one process.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))

from agent import Agent, prompts  # noqa: E402
from agent.turns import TurnError, parse_turn  # noqa: E402
from backends import Backend, GenerationRequest, Message, SamplingParams  # noqa: E402
from backends.local.backend import LocalBackend  # noqa: E402
from memory import Memory  # noqa: E402
from tools import ToolRegistry  # noqa: E402
from train.tasks import answer_matches  # noqa: E402

ARITHMETIC = [
    ("What is 37 * 91? Use the calculator.", "3367"),
    ("What is 1234 + 5678? Use the calculator.", "6912"),
    ("What is 999 - 123? Use the calculator.", "876"),
    ("What is 144 / 12? Use the calculator.", "12"),
    ("What is 2 ** 10? Use the calculator.", "1024"),
    ("What is 17 * 23? Use the calculator.", "391"),
    ("What is 5000 - 1? Use the calculator.", "4999"),
    ("What is 81 / 9? Use the calculator.", "9"),
    ("What is 250 * 4? Use the calculator.", "1000"),
    ("What is 73 + 27? Use the calculator.", "100"),
    ("What is the square root of 169? Use the calculator.", "13"),
    ("What is 15 % 4? Use the calculator.", "3"),
]
FACTS = {
    "facts.md": "The project codename is Bluefin. The launch is scheduled for March. The lead engineer is Priya. "
                "The server room is on floor 7. The backup password hint is 'tidepool'. The budget is 42000 euros.",
    "orchard.md": "A crate of Zephyr apples holds 36 apples. The orchard ships its crates on Tuesdays.",
}
MEMORY_TASKS = [
    ("What is the project codename?", "Bluefin"),
    ("In which month is the launch?", "March"),
    ("Who is the lead engineer?", "Priya"),
    ("On which floor is the server room?", "7"),
    ("What is the backup password hint?", "tidepool"),
    ("What is the budget in euros?", "42000"),
]
WORKSPACE = {
    "notes.txt": "Meeting notes: the demo is on Friday. Bring the red cable.",
    "inventory.csv": "item,count\napples,12\npears,7\nplums,30\n",
    "README.md": "# Orchard\nThis repository tracks the orchard's harvest. Owner: Tomasz.",
}
FILE_TASKS = [
    ("Read notes.txt. On which day is the demo?", "Friday"),
    ("Read notes.txt. Which cable should be brought?", "red"),
    ("Read inventory.csv. How many pears are there?", "7"),
    ("Read inventory.csv. How many plums are there?", "30"),
    ("Read README.md. Who is the owner?", "Tomasz"),
    ("List the files in the workspace. Which file is a CSV file?", "inventory.csv"),
]
MULTI_STEP = [
    ("Add 17 and 25, then multiply the result by 3. Use the calculator.", "126"),
    ("Read inventory.csv and add the number of apples and pears with the calculator.", "19"),
    ("Multiply 12 by 12, then subtract 44. Use the calculator.", "100"),
    ("What is (300 + 45) * 2? Use the calculator.", "690"),
    ("Read inventory.csv. What is the total of apples, pears and plums? Use the calculator.", "49"),
    ("Divide 1000 by 8, then add 5. Use the calculator.", "130"),
    # a lookup, then a calculation on what it found
    ("Using the notes, how many apples are in 14 crates of Zephyr apples? Use the calculator.", "504"),
    ("Using the notes, what is the budget in euros divided by 12? Use the calculator.", "3500"),
    ("Using the notes, on which floor is the server room? Add 10 to it with the calculator.", "17"),
    ("Read inventory.csv. How many more plums than pears are there? Use the calculator.", "23"),
    ("Read inventory.csv and multiply the number of plums by 3 with the calculator.", "90"),
    ("Add 250 and 790, then divide the result by 4. Use the calculator.", "260"),
]
TASKS = ARITHMETIC + MEMORY_TASKS + FILE_TASKS + MULTI_STEP
GROUPS = {"arithmetic": ARITHMETIC, "memory": MEMORY_TASKS, "files": FILE_TASKS, "multi-step": MULTI_STEP}
TOOLS = ("calculator", "list_files", "read_file", "search_files", "recall")


def react(backend: LocalBackend, registry: ToolRegistry, task: str, max_steps: int = 4) -> str | None:
    """The baseline: one unconstrained loop, the model's text parsed (and repaired) each turn."""
    conversation = [Message(role="user", content=prompts.ACT.format(
        task=task, plan="(none)", memory="", tools=prompts.tool_lines(registry.schemas())))]
    sampling = SamplingParams(temperature=0.0, max_tokens=150)
    for _ in range(max_steps):
        text = backend.generate(GenerationRequest(
            messages=[Message(role="system", content=prompts.SYSTEM), *conversation], sampling=sampling)).text
        conversation.append(Message(role="assistant", content=text))
        try:
            turn = parse_turn(text)
        except TurnError as exc:
            conversation.append(Message(role="user", content=prompts.PARSE_ERROR.format(error=exc)))
            continue
        if turn.answer is not None:
            return turn.answer
        results = []
        for name, args in turn.calls:
            result = registry.call(name, args)
            results.append((name, args, result.output if result.ok else f"error: {result.error}"))
        conversation.append(Message(role="user", content=prompts.OBSERVATION.format(results=prompts.results_block(results))))
    return None


def plain_loop(backend: Backend, registry: ToolRegistry, task: str, max_turns: int = 6) -> tuple[str | None, int, int]:
    """What a user writes first, in twenty lines: ask with the tools (tool_choice="auto"), run the calls,
    send the results back in the tool role, until the model answers. (answer, model calls, tool calls)."""
    messages, sampling, calls = [Message(role="user", content=task)], SamplingParams(temperature=0, max_tokens=300), 0
    for turn in range(1, max_turns + 1):
        reply = backend.generate(GenerationRequest(messages=messages, tools=registry.schemas(), tool_choice="auto",
                                                   sampling=sampling))
        if not reply.tool_calls:
            return reply.text.strip(), turn, calls
        messages.append(Message(role="assistant", content=reply.text or None, tool_calls=reply.tool_calls))
        for call in reply.tool_calls:
            result = registry.call(call.name, call.arguments)
            calls += result.ok
            messages.append(Message(role="tool", tool_call_id=call.id,
                                    content=result.output if result.ok else f"error: {result.error}"))
    return None, max_turns, calls


def plain_run(backend: Backend, registry: ToolRegistry) -> Callable[[str], tuple[str | None, bool, int]]:
    def run(task: str) -> tuple[str | None, bool, int]:
        answer, _, calls = plain_loop(backend, registry, task)
        return answer, False, calls
    return run


def smolagents_run(registry: ToolRegistry, model: Path | None) -> Callable[[str], tuple[str | None, bool, int]]:
    """smolagents' ToolCallingAgent through `tokentrail serve` (started here, stopped at exit)."""
    import atexit

    import httpx
    from function_calling import serve
    from smolagents import OpenAIServerModel, Tool, ToolCallingAgent

    process, url = serve(ROOT, model)
    atexit.register(process.kill)
    kinds = {"string", "integer", "number", "boolean", "object", "array"}
    tools = []
    for schema in registry.schemas():
        fn = schema["function"]
        parameters = fn.get("parameters") or {}
        inputs = {name: {"type": spec.get("type") if spec.get("type") in kinds else "any",
                         "description": spec.get("description", name),
                         **({} if name in parameters.get("required", []) else {"nullable": True})}
                  for name, spec in parameters.get("properties", {}).items()}

        def forward(self, **kwargs: object) -> str:
            result = registry.call(self.name, {k: v for k, v in kwargs.items() if v is not None})
            return result.output if result.ok else f"error: {result.error}"

        attributes = {"name": fn["name"], "description": fn.get("description", fn["name"]), "inputs": inputs,
                      "output_type": "string", "forward": forward, "skip_forward_signature_validation": True}
        tools.append(type(f"Tool_{fn['name']}", (Tool,), attributes)())
    model_id = httpx.get(f"{url}/models").json()["data"][0]["id"]
    server_model = OpenAIServerModel(model_id=model_id, api_base=url, api_key="none", temperature=0.0, max_tokens=200)

    def run(task: str) -> tuple[str | None, bool, int]:
        agent = ToolCallingAgent(tools=tools, model=server_model, max_steps=4, verbosity_level=0)
        try:
            answer = agent.run(task)
        except Exception as exc:  # the peer's own failures count as no answer
            print(f"    smolagents: {type(exc).__name__}: {str(exc)[:120]}")
            return None, False, 0
        calls = sum(1 for step in agent.memory.steps for call in (getattr(step, "tool_calls", None) or [])
                    if call.name != "final_answer" and not getattr(step, "error", None))
        return (None if answer is None else str(answer)), False, calls

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=len(TASKS))
    parser.add_argument("--every", type=int, default=1, help="every Nth task only: a sample of every group, for slow models")
    parser.add_argument("--only", choices=["react", "agent", "native", "plain", "smolagents"], default=None)
    parser.add_argument("--model", default=None, help="a GGUF file (default: the default model)")
    parser.add_argument("--adapter", action="append", default=[],
                        help="a LoRA adapter folder from `tokentrail train` (repeatable; the model alone runs first)")
    args = parser.parse_args()
    for adapter in [None, *args.adapter]:
        evaluate(LocalBackend(args.model, adapter=adapter), args)


def evaluate(backend: LocalBackend, args: argparse.Namespace) -> None:
    print(f"model: {backend.model_name}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ws").mkdir()
        for name, text in WORKSPACE.items():
            (root / "ws" / name).write_text(text)
        memory = Memory(root / "memory.db", embedder=None)
        for name, text in FACTS.items():
            memory.add_text(text, source=name)
        builtins = ToolRegistry.with_builtins(root / "ws", memory=memory)
        registry = ToolRegistry([builtins.get(n) for n in TOOLS])
        def agent_run(native: bool):
            def run(task: str) -> tuple[str | None, bool, int]:
                result = Agent(backend, tools=registry, memory=memory, native_tools=native).run(task)
                calls = sum(1 for e in result.events if e.type == "tool_result" and e.ok)
                return result.answer, result.verified, calls
            return run

        runners = {
            "react": lambda task: (react(backend, registry, task), False, 0),
            "agent": agent_run(native=False),
        }
        if backend.tool_format is not None:
            runners["native"] = agent_run(native=True)
            runners["plain"] = plain_run(backend, registry)
        if importlib.util.find_spec("smolagents") and args.only in (None, "smolagents") and backend.adapter is None:
            runners["smolagents"] = smolagents_run(registry, Path(args.model) if args.model else None)
        tasks = TASKS[: args.limit : args.every]
        for label, run in runners.items():
            if args.only and label != args.only:
                continue
            solved, calls, verified_wrong, start = set(), 0, 0, time.perf_counter()
            for task, expected in tasks:
                answer, verified, ran = run(task)
                ok = answer is not None and answer_matches(answer, expected)
                solved |= {task} if ok else set()
                calls += ran
                verified_wrong += verified and not ok
                print(f"  [{label}] {'PASS' if ok else 'fail'}{' V' if verified else '  '}  {task[:60]:60}  "
                      f"-> {str(answer)[:60]!r}", flush=True)
            elapsed = time.perf_counter() - start
            groups = ", ".join(f"{name} {sum(t in solved for t, _ in group)}/{sum((t, e) in tasks for t, e in group)}"
                               for name, group in GROUPS.items())
            print(f"{label}: {len(solved)}/{len(tasks)} tasks ({groups}); {calls} tool calls ran; "
                  f"{verified_wrong} wrong answers verified; {elapsed:.0f} s", flush=True)


if __name__ == "__main__":
    main()
