"""The second agent evaluation: a user's own plain-function tools (benchmarks/user_tools.py), 34 tasks.

    .venv/bin/python benchmarks/user_tools_eval.py [--model NAME_OR_PATH] [--only agent|agent-plan|plain|smolagents]
        [--every N] [--group lookup|conversion|date|chain|no tool] [--verbose] [--max-steps N] [--parallel N]
        [--traces DIR]

Ways to run the same model on the same tasks and tools (greedy):
  agent       our Agent with its defaults: Agent(backend, tools=TOOLS).run(task)
  agent-plan  the same with a plan turn first (plan=True), for a model with its own tool format
  plain       the tool loop a user writes in twenty lines (plain_loop below): the question, the
              model with tools (tool_choice="auto"), the calls run and their results sent back in
              the tool role, until a reply without calls, which is the answer; at most 6 turns
  smolagents  smolagents' ToolCallingAgent through `tokentrail serve` (pip install smolagents)
An answer is right when it holds an acceptable number (rounded to as many decimals as the expected
one has: 26.098 for 26.1) or word (whole, case aside). Printed per
way: tasks solved by group; for our agent, right answers a check refused (the run ended on a
wrong answer or none after a refused right one) and wrong answers passed as verified; model calls
and tool calls per task; seconds per task. Then, per check (agent/checks.py) that fired, how often
it refused a right answer and how often a wrong one.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))

from agent_eval import plain_loop  # noqa: E402
from user_tools import GROUPS, TOOLS  # noqa: E402

from agent import Agent  # noqa: E402
from backends import Backend, load_backend  # noqa: E402
from tools import ToolRegistry  # noqa: E402

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def right(answer: str | None, expected: list[Any]) -> bool:
    if not answer:
        return False
    found = [float(n.replace(",", "")) for n in NUMBER.findall(answer) if n.replace(",", "").strip("-.")]
    for want in expected:
        decimals = len(repr(want).partition(".")[2]) if isinstance(want, float) else 0
        if isinstance(want, (int, float)) and any(abs(round(n, decimals) - want) < 1e-9 for n in found):
            return True
        if isinstance(want, str) and re.search(rf"(?<!\w){re.escape(want.casefold())}(?!\w)", answer.casefold()):
            return True
    return False


class Outcome:
    def __init__(self, answer: str | None, model_calls: int, tool_calls: int, verified: bool = False,
                 refused: list[tuple[str, list[str]]] = ()) -> None:
        self.answer, self.model_calls, self.tool_calls = answer, model_calls, tool_calls
        self.verified, self.refused = verified, list(refused)  # refused: (answer, rules that refused it)


def plain_run(backend: Backend, registry: ToolRegistry, task: str) -> Outcome:
    answer, model_calls, tool_calls = plain_loop(backend, registry, task)
    return Outcome(answer, model_calls, tool_calls)


def agent_run(backend: Backend, registry: ToolRegistry, task: str, traces: Path | None = None, **options: Any) -> Outcome:
    result = Agent(backend, tools=registry, **options).run(task)
    if traces is not None:  # every event of the run, one JSON object a line, named by the task
        traces.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9]+", "-", task)[:60].strip("-")
        (traces / f"{name}.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in result.events), encoding="utf-8")
    refused = [(e.answer, e.rules) for e in result.events if e.type == "verdict" and not e.passed and e.answer]
    return Outcome(result.answer, sum(e.type == "model_reply" for e in result.events),
                   sum(e.type == "tool_result" and e.ok for e in result.events), result.verified, refused)


def smolagents_runner(registry: ToolRegistry, model: str | None) -> Callable[[str], Outcome]:
    from agent_eval import smolagents_run

    run = smolagents_run(registry, model)

    def outcome(task: str) -> Outcome:
        answer, _, calls = run(task)
        return Outcome(answer, 0, calls)

    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model name or path (default: the default model)")
    parser.add_argument("--only", choices=["agent", "agent-plan", "plain", "smolagents"], action="append", default=[])
    parser.add_argument("--every", type=int, default=1, help="every Nth task of each group only")
    parser.add_argument("--group", choices=list(GROUPS), action="append", default=[], help="only these groups")
    parser.add_argument("--verbose", action="store_true", help="print each task's answer")
    parser.add_argument("--traces", type=Path, default=None, help="write each agent run's events here (JSONL a task)")
    parser.add_argument("--max-steps", type=int, default=None, help="our agent's step budget (default: Agent's)")
    parser.add_argument("--parallel", type=int, default=1, help="tasks run at once, their model calls decoded together")
    args = parser.parse_args()
    backend = load_backend("local", model=args.model, parallel=args.parallel)
    registry = ToolRegistry(TOOLS)
    budget: dict[str, Any] = {"max_steps": args.max_steps} if args.max_steps else {}
    budget["traces"] = args.traces
    ways: dict[str, Callable[[str], Outcome]] = {
        "agent": lambda task: agent_run(backend, registry, task, **budget),
        "agent-plan": lambda task: agent_run(backend, registry, task, plan=True, **budget),
        "plain": lambda task: plain_run(backend, registry, task),
    }
    if not args.only or "smolagents" in args.only:
        ways["smolagents"] = smolagents_runner(registry, args.model)
    groups = {name: tasks[:: args.every] for name, tasks in GROUPS.items() if not args.group or name in args.group}
    total = sum(len(t) for t in groups.values())
    print(f"model: {backend.model_name}; {total} tasks\n")
    print("| way | solved | " + " | ".join(groups) + " | right refused | wrong verified | model calls/task "
          "| tool calls/task | s/task |\n|" + "---|" * (len(groups) + 7))
    rules: dict[str, list[int]] = {}
    for way in [w for w in args.only or ways if w in ways]:
        solved, refused, wrong_verified, model_calls, tool_calls = 0, 0, 0, 0, 0
        fired: dict[str, list[int]] = {}  # rule -> [refusals of a right answer, of a wrong one]
        start = time.perf_counter()
        items = [(group, task, expected) for group, tasks in groups.items() for task, expected in tasks]
        with ThreadPoolExecutor(max_workers=1 if way == "smolagents" else args.parallel) as pool:
            outcomes = list(pool.map(lambda item: ways[way](item[1]), items))
        by_group = dict.fromkeys(groups, 0)
        for (group, task, expected), outcome in zip(items, outcomes):
            ok = right(outcome.answer, expected)
            solved, by_group[group] = solved + ok, by_group[group] + ok
            refused += not ok and any(right(a, expected) for a, _ in outcome.refused)
            for answer, names in outcome.refused:
                for rule in names:
                    fired.setdefault(rule, [0, 0])[not right(answer, expected)] += 1
            wrong_verified += outcome.verified and not ok
            model_calls, tool_calls = model_calls + outcome.model_calls, tool_calls + outcome.tool_calls
            if args.verbose:
                print(f"  [{way}] {'ok ' if ok else 'BAD'}{' verified' if outcome.verified else ''} {task} -> "
                      f"{outcome.answer!r}", flush=True)
                for answer, names in outcome.refused:
                    print(f"      refused ({', '.join(names)}; {'right' if right(answer, expected) else 'wrong'}): "
                          f"{answer!r}", flush=True)
        seconds = time.perf_counter() - start
        cells = " | ".join(f"{by_group[g]}/{len(t)}" for g, t in groups.items())
        agentic = way.startswith("agent")
        print(f"| {way} | **{solved}/{total}** | {cells} | {refused if agentic else '-'} | "
              f"{wrong_verified if agentic else '-'} | {model_calls / total:.1f} | {tool_calls / total:.1f} "
              f"| {seconds / total:.1f} |", flush=True)
        rules.update({f"{way}: {rule}": counts for rule, counts in fired.items()})
    if rules:
        print("\n| way: rule | refusals | of a right answer | of a wrong one |\n|---|---|---|---|")
        for rule, (of_right, of_wrong) in rules.items():
            print(f"| {rule} | {of_right + of_wrong} | {of_right} | {of_wrong} |")


if __name__ == "__main__":
    main()
