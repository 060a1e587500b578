from click.testing import CliRunner
from pydantic import BaseModel

from cli import main
from memory import Memory


class Phase(BaseModel):
    type: str = "phase"
    phase: str


def test_runs_and_events_round_trip(tmp_path):
    with Memory(tmp_path / "m.db", embedder=None) as m:
        run = m.traces.start("add two numbers", backend="scripted", model="none")
        m.traces.log(run, Phase(phase="plan"))
        m.traces.log(run, {"type": "tool_call", "name": "add", "arguments": {"a": 1, "b": 2}})
        m.traces.finish(run, "done", answer="3", verified=True)
        [summary] = m.traces.runs()
        assert summary["task"] == "add two numbers" and summary["events"] == 2 and summary["verified"] == 1
        events = m.traces.events(run)
        assert [e["seq"] for e in events] == [1, 2] and events[1]["payload"]["arguments"] == {"a": 1, "b": 2}
    db = str(tmp_path / "m.db")
    result = CliRunner().invoke(main, ["logs", "--db", db])
    assert run in result.output and "verified" in result.output and "answer: 3" in result.output
    detail = CliRunner().invoke(main, ["logs", "--db", db, "--run", run])
    assert "tool_call" in detail.output and '"name": "add"' in detail.output


def test_memory_cli(tmp_path):
    (tmp_path / "notes.md").write_text("The launch window opens in March.")
    db = str(tmp_path / "m.db")
    runner = CliRunner()
    added = runner.invoke(main, ["memory", "add", str(tmp_path / "notes.md"), "--db", db, "--no-embeddings"])
    assert "1 added" in added.output
    found = runner.invoke(main, ["memory", "search", "launch window", "--db", db, "--mode", "bm25"])
    assert "notes.md" in found.output and "March" in found.output
    assert "documents  1" in runner.invoke(main, ["memory", "stats", "--db", db]).output
    (tmp_path / "bad.db").write_text("garbage" * 100)
    broken = runner.invoke(main, ["memory", "stats", "--db", str(tmp_path / "bad.db")])
    assert broken.exit_code == 1 and "not a usable SQLite memory database" in broken.output
