"""Runs become training data: turns of right runs as SFT examples, right against wrong as DPO pairs."""

import json

import pytest
from click.testing import CliRunner

from agent import Agent
from backends.scripted import ScriptedBackend
from cli import main
from memory import Memory
from tools import tool
from train.tasks import generate, read_tasks
from train.traces import dpo_pairs, runs_from_memory, sft_examples, turns, write_datasets


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def reply(value):
    return json.dumps(value)


def run(memory, replies, task="What is 2 + 3?"):
    return Agent(ScriptedBackend(replies=replies), tools=[add], memory=memory, max_replans=1).run(task)


def test_right_runs_become_examples_as_the_model_saw_and_answered_them(tmp_path):
    with Memory(tmp_path / "m.db", embedder=None) as memory:
        right = run(memory, [reply({"steps": ["Add"]}), reply({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}),
                             reply({"answer": 5})])
        assert right.verified
        # a wrong direct answer first (its check fails), then the same path as the right run
        wrong = run(memory, [reply({"answer": 7}), reply({"steps": ["Add"]}),
                             reply({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 2}}]}), reply({"answer": 4})])
        assert not wrong.verified
        runs = runs_from_memory(memory)
    assert {r.right for r in runs} == {True, False}
    examples = sft_examples(runs)
    assert len(examples) == 3  # plan, call and answer of the verified run
    first = examples[0]["messages"]
    assert first[0]["role"] == "system" and "What is 2 + 3?" in first[1]["content"] and first[-1]["role"] == "assistant"
    assert not any('"answer": 7' in m.get("content", "") for e in examples for m in e["messages"])  # failed: not learnt
    pairs = dpo_pairs(runs)
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)
    assert any('"b": 3' in p["chosen"][0]["content"] and '"b": 2' in p["rejected"][0]["content"] for p in pairs)
    sft_path, dpo_path, n_examples, n_pairs = write_datasets(runs, tmp_path / "data")
    assert len(sft_path.read_text().splitlines()) == n_examples == 3 and len(dpo_path.read_text().splitlines()) == n_pairs


def test_the_users_rating_outranks_the_agents_verdict(tmp_path):
    added = [reply({"steps": ["Add"]}), reply({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}),
             reply({"answer": 5})]
    with Memory(tmp_path / "m.db", embedder=None) as memory:
        praised = run(memory, [reply({"answer": "Paris"})], task="What is the capital of France?")  # nothing checks it
        panned = run(memory, added, task="What is 2 + 3?")
        assert not praised.verified and panned.verified
        memory.traces.rate(praised.run_id, good=True)
        memory.traces.rate(panned.run_id, good=False)
        unrated = run(memory, added, task="Add 2 and 3.")
        assert {r.task: r.right for r in runs_from_memory(memory)} == {"What is the capital of France?": True,
                                                                      "What is 2 + 3?": False, "Add 2 and 3.": True}
        examples = json.dumps(sft_examples(runs_from_memory(memory)))
        assert "What is the capital of France?" in examples and "Add 2 and 3." in examples and "What is 2 + 3?" not in examples
        for bad in ("no-such-run", ""):
            with pytest.raises(ValueError, match="no finished run"):
                memory.traces.rate(bad, good=True)
        running = memory.traces.start("still going")
        with pytest.raises(ValueError, match="no finished run"):
            memory.traces.rate(running, good=False)
        assert unrated.run_id and [r["feedback"] for r in memory.traces.runs() if r["id"] == unrated.run_id] == [None]
    listed = CliRunner().invoke(main, ["logs", "--db", str(tmp_path / "m.db")]).output
    assert "marked good" in listed and "marked bad" in listed


def test_calls_before_a_failed_check_are_marked():
    events = [{"type": "model_reply", "phase": "act", "messages": [{"role": "user", "content": "q"}],
               "reply": {"role": "assistant", "content": "a"}},
              {"type": "verdict", "passed": False, "reasons": ["x"], "by": "checks"},
              {"type": "model_reply", "phase": "act", "messages": [{"role": "user", "content": "q2"}],
               "reply": {"role": "assistant", "content": "b"}},
              {"type": "verdict", "passed": True, "reasons": [], "by": "checks"}]
    assert [(t.reply.content, t.failed) for t in turns(events)] == [("a", True), ("b", False)]


def test_the_shipped_tasks_are_generated_checkable_and_disjoint_from_the_evaluation(tmp_path):
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    shipped, problems = read_tasks(root / "train" / "agent_tasks.jsonl")
    assert not problems and len(shipped) == 300 and shipped == generate()
    assert {t.group for t in shipped} == {"arithmetic", "files", "notes", "multi-step"}
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        from agent_eval import TASKS
    finally:
        sys.path.remove(str(root / "benchmarks"))
    assert not {t.task for t in shipped} & {task for task, _ in TASKS}
    for task in shipped:
        assert task.expected and (task.group != "files" or task.files)


def test_the_command_line_turns_a_memorys_runs_into_datasets(tmp_path):
    from click.testing import CliRunner

    from cli import main

    with Memory(tmp_path / "m.db", embedder=None) as memory:
        run(memory, [reply({"steps": ["Add"]}), reply({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}),
                     reply({"answer": 5})])
    result = CliRunner().invoke(main, ["train", "data", "--memory", str(tmp_path / "m.db"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "1 runs (1 verified): 3 examples" in result.output and (tmp_path / "out" / "sft.jsonl").exists()
    missing = CliRunner().invoke(main, ["train", "data", "--memory", str(tmp_path / "none.db"), "-o", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "no memory database" in missing.output


@pytest.mark.parametrize("parallel", ["1", "3"])  # 3: the tasks at once, their model calls in one batch
def test_collect_runs_each_task_and_writes_as_it_goes(tmp_path, parallel):
    from click.testing import CliRunner

    from cli import main
    from tests.test_train.test_sft import tiny
    from train.tasks import write_tasks

    write_tasks(generate(3), tmp_path / "tasks.jsonl")
    (tmp_path / "tasks.jsonl").write_text((tmp_path / "tasks.jsonl").read_text() + "{not a task\n")
    result = CliRunner().invoke(main, ["train", "collect", str(tmp_path / "tasks.jsonl"), "-o", str(tmp_path / "out"),
                                       "--model", str(tiny(tmp_path)), "--runs", "1", "--parallel", parallel])
    assert result.exit_code == 0, result.output
    assert "skipped line 4" in result.output and "3 runs" in result.output
    assert (tmp_path / "out" / "sft.jsonl").exists() and (tmp_path / "out" / "dpo.jsonl").exists()
