"""Tasks with checkable answers over the built-in tools, generated (seeded), and the runs that
collect the agent's own right and wrong attempts at them (`tokentrail train collect`).

Each task carries the workspace files and memory notes it needs, so a run needs nothing else.
Names and numbers are drawn so that no task is one of benchmarks/agent_eval.py's. The shipped
set, train/agent_tasks.jsonl, is `generate()` as it stands (300 tasks, seed 7).
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import regex
from pydantic import BaseModel, Field

from agent import Agent
from agent.grounding import close_to_any, numbers
from backends import Backend, SamplingParams
from memory import Memory
from tools import ToolRegistry
from train.traces import Run, turns

ITEMS = ["figs", "limes", "kiwis", "dates", "lemons", "melons", "cherries", "peaches", "onions", "carrots"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Saturday", "Sunday"]
THINGS = ["door", "locker", "safe", "gate", "vault", "cabinet", "garage", "shed"]
WORDS = ["amber", "cobalt", "falcon", "harbor", "juniper", "lantern", "meadow", "orchid", "pepper", "quartz", "raven",
         "saffron", "tundra", "velvet", "willow", "zephyr"]
TOOLS = ("calculator", "list_files", "read_file", "search_files", "recall")


class Task(BaseModel):
    task: str
    expected: str
    group: str
    files: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def generate(count: int = 300, seed: int = 7) -> list[Task]:
    """`count` tasks, a quarter each of arithmetic, files, notes and multi-step."""
    rng, tasks = random.Random(seed), []
    makers: list[Callable[[random.Random], Task]] = [_arithmetic, _file, _note, _multi_step]
    for i in range(count):
        tasks.append(makers[i % len(makers)](rng))
    return tasks


def _arithmetic(rng: random.Random) -> Task:
    a, b = rng.randint(13, 999), rng.randint(3, 99)
    op, value = rng.choice([("+", a + b), ("-", a - b), ("*", a * b)])
    return Task(task=f"What is {a} {op} {b}? Use the calculator.", expected=str(value), group="arithmetic")


def _stock(rng: random.Random) -> tuple[dict[str, str], dict[str, int]]:
    counts = {item: rng.randint(2, 60) for item in rng.sample(ITEMS, 3)}
    return {"stock.csv": "item,count\n" + "".join(f"{k},{v}\n" for k, v in counts.items())}, counts


def _file(rng: random.Random) -> Task:
    if rng.random() < 0.5:
        files, counts = _stock(rng)
        item = rng.choice(list(counts))
        return Task(task=f"Read stock.csv. How many {item} are there?", expected=str(counts[item]), group="files", files=files)
    day, name = rng.choice(DAYS), f"plan{rng.randint(1, 9)}.txt"
    return Task(task=f"Read {name}. On which day is the review?", expected=day, group="files",
                files={name: f"Plan: the review is on {day}. Bring the slides."})


def _note(rng: random.Random) -> Task:
    thing, word = rng.choice(THINGS), rng.choice(WORDS)
    return Task(task=f"What is the {thing} code word?", expected=word, group="notes",
                notes=[f"The {thing} code word is {word}. The kettle is in the kitchen."])


def _multi_step(rng: random.Random) -> Task:
    if rng.random() < 0.5:
        a, b, c = rng.randint(11, 60), rng.randint(11, 60), rng.randint(2, 9)
        return Task(task=f"Add {a} and {b}, then multiply the result by {c}. Use the calculator.",
                    expected=str((a + b) * c), group="multi-step")
    files, counts = _stock(rng)
    x, y = rng.sample(list(counts), 2)
    return Task(task=f"Read stock.csv and add the number of {x} and {y} with the calculator.",
                expected=str(counts[x] + counts[y]), group="multi-step", files=files)


def read_tasks(path: Path) -> tuple[list[Task], list[str]]:
    tasks, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                tasks.append(Task.model_validate_json(line))
            except ValueError as exc:
                problems.append(f"line {number}: {str(exc).splitlines()[0]}")
    return tasks, problems


def attempt(backend: Backend, task: Task, runs: int, temperature: float, seed: int = 0) -> list[Run]:
    """`runs` agent runs of `task` in a workspace and memory of its own; right = the expected answer in it."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        workspace.mkdir()
        for name, text in task.files.items():
            (workspace / name).write_text(text)
        with Memory(Path(tmp) / "memory.db", embedder=None) as memory:
            for i, note in enumerate(task.notes):
                memory.add_text(note, source=f"note{i}.md")
            builtins = ToolRegistry.with_builtins(workspace, memory=memory)
            registry = ToolRegistry([builtins.get(name) for name in TOOLS])
            for i in range(runs):
                sampling = SamplingParams(temperature=temperature if i else 0.0, max_tokens=300, seed=seed + i)
                result = Agent(backend, tools=registry, memory=memory, sampling=sampling).run(task.task)
                right = result.answer is not None and answer_matches(result.answer, task.expected)
                out.append(Run(task.task, right, turns(result.events)))
    return out


def answer_matches(answer: str, expected: str) -> bool:
    """Whether `answer` gives `expected`: the same number among its numbers ("70" does not give 7),
    or the expected words as whole words ("red" is not in "bored"), case aside."""
    try:
        value = float(expected)
    except ValueError:
        return regex.search(rf"(?<!\w){regex.escape(expected)}(?!\w)", answer, regex.IGNORECASE) is not None
    return any(close_to_any(n, {value}) for n in numbers(answer))


def write_tasks(tasks: list[Task], path: Path) -> None:
    path.write_text("".join(json.dumps(t.model_dump(exclude_defaults=True)) + "\n" for t in tasks))


def summary(runs: list[Run]) -> dict[str, Any]:
    return {"runs": len(runs), "right": sum(r.right for r in runs), "tasks": len({r.task for r in runs}),
            "tasks_right": len({r.task for r in runs if r.right})}
