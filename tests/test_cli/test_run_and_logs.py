"""`tokentrail run`, `logs` and `memory` as a user meets them: exit codes, what is recorded, what is said."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from cli import main
from cli.run import _ctrl_c_recorded

PLAN = json.dumps({"steps": ["Use the calculator"]})
CALL = json.dumps({"tool_calls": [{"name": "calculator", "arguments": {"expression": "37 * 91"}}]})
ANSWER = json.dumps({"answer": "3367"})


def run(*args):
    return CliRunner().invoke(main, list(args))


def scripted(*replies):
    return ["-b", "scripted", "-o", f"replies={json.dumps(list(replies))}"]


def test_exit_status_says_how_the_run_ended(tmp_path):
    verified = run("run", "37 * 91?", *scripted(PLAN, CALL, ANSWER, json.dumps({"passed": True, "reasons": []})))
    assert verified.exit_code == 0, verified.output
    unverified = run("run", "37 * 91?", *scripted(PLAN, ANSWER, json.dumps({"passed": False, "reasons": ["no tool used"]}),
                                                 PLAN, ANSWER, json.dumps({"passed": False, "reasons": ["still"]})))
    assert unverified.exit_code == 3 and "not verified" in unverified.output
    budget = run("run", "37 * 91?", "--max-steps", "1", *scripted(PLAN, CALL))
    assert budget.exit_code == 1 and "step budget of 1 turns ran out" in budget.output
    nonsense = run("run", "hi", "--max-steps", "0", "-b", "scripted")
    assert nonsense.exit_code == 2 and "--max-steps" in nonsense.output and "0 is not in the range x>=1" in nonsense.output


def test_every_run_is_logged_by_default_and_listed_once(own_home):
    assert run("run", "37 * 91?", *scripted(PLAN, CALL, ANSWER, json.dumps({"passed": True, "reasons": []}))).exit_code == 0
    listing = run("logs")
    assert listing.exit_code == 0 and "37 * 91?" in listing.output
    assert listing.output.count("verified") == 1  # the status, once
    passed = json.dumps({"passed": True, "reasons": []})
    kept_out = run("run", "37 * 91, not kept?", "--no-log", *scripted(PLAN, CALL, ANSWER, passed))
    assert kept_out.exit_code == 0
    assert "not kept" not in run("logs").output
    run_id = listing.output.split()[0]
    detail = run("logs", "--run", run_id)
    assert detail.exit_code == 0 and "tool_call" in detail.output and "Infinity" not in detail.output


def test_json_prints_events_and_tokens_only_on_request(tmp_path):
    replies = scripted(PLAN, ANSWER, json.dumps({"passed": True, "reasons": []}))
    events = [json.loads(line) for line in run("run", "x", "--json", "--no-log", *replies).output.splitlines()]
    assert events and not any(e["type"] == "token" for e in events) and events[-1]["type"] == "final"
    with_tokens = run("run", "x", "--json", "--tokens", "--no-log", *replies).output.splitlines()
    assert any(json.loads(line)["type"] == "token" for line in with_tokens)


def test_reading_a_database_that_is_not_there_says_so(tmp_path):
    typo = tmp_path / "typo.db"
    for command in (["memory", "search", "x"], ["memory", "stats"], ["logs"]):
        result = run(*command, "--memory", str(typo))
        assert result.exit_code == 1 and f"no memory database at {typo}" in result.output
    assert not typo.exists()
    (tmp_path / "notes.md").write_text("The launch window opens in March.")
    db = str(tmp_path / "m.db")
    assert run("memory", "add", str(tmp_path / "notes.md"), "--memory", db, "--no-embeddings").exit_code == 0
    nothing = run("memory", "search", "zebra", "--memory", db, "--mode", "bm25")
    assert nothing.exit_code == 0 and "no matches for 'zebra'" in nothing.output
    missing = run("logs", "--memory", db, "--run", "nosuch")
    assert missing.exit_code == 1 and "no run 'nosuch'" in missing.output
    assert "embedder   None" in run("memory", "stats", "--db", db).output  # --db still works


@pytest.mark.model
def test_memory_search_explains_its_hits_and_reembed_fills_in_vectors(tmp_path):
    (tmp_path / "notes.md").write_text("The launch window opens in March. The rocket is called Bluefin.")
    db = str(tmp_path / "m.db")
    assert run("memory", "add", str(tmp_path / "notes.md"), "--memory", db, "--no-embeddings").exit_code == 0
    stopwords = run("memory", "search", "what is the", "--memory", db, "--mode", "bm25")
    assert "only common words" in stopwords.output
    assert "embedded 1 chunks with all-MiniLM-L6-v2" in run("memory", "reembed", "--memory", db).output
    found = run("memory", "search", "rocket launch", "--memory", db, "--explain")
    assert found.exit_code == 0 and "why: every word; bm25 " in found.output and "cosine 0." in found.output


def test_a_tool_that_needs_approval_says_how_to_give_it(tmp_path):
    call = json.dumps({"tool_calls": [{"name": "write_file", "arguments": {"path": "a.txt", "content": "hi"}}]})
    result = run("run", "write it", "--tools", "write_file", "-w", str(tmp_path), "--max-steps", "1", "--no-log",
                 *scripted(PLAN, call))
    assert "run it again with --yes" in result.output and not (tmp_path / "a.txt").exists()


def test_ctrl_c_ends_the_run_with_130_and_the_log_says_interrupted(own_home, tmp_path):
    sleep = json.dumps({"tool_calls": [{"name": "python", "arguments": {"code": "import time; time.sleep(60)"}}]})
    command = [sys.executable, "-m", "cli", "run", "wait", "--json", "--yes", "--tools", "python", "-w", str(tmp_path),
               *scripted(PLAN, sleep)]
    # Ctrl+C as a terminal delivers it, even when the suite runs in a background job (whose shell ignores
    # SIGINT, an ignore its children inherit: the run then went on to "no answer", exit 1)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stdout:
        if json.loads(line)["type"] == "tool_call":
            break
    process.send_signal(signal.SIGINT)
    status = process.wait(timeout=30)
    assert status == 130, f"stdout after the call: {process.stdout.read()[-2000:]!r}; stderr: {process.stderr.read()[-2000:]!r}"
    assert "interrupted" in run("logs").output


def test_a_ctrl_c_that_surfaces_as_another_error_is_still_an_interrupt():
    # CI once saw Ctrl+C land inside the tool pool's lock release, which Python reports as RuntimeError
    seen = []
    with pytest.raises(RuntimeError):
        with _ctrl_c_recorded(seen):
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            except KeyboardInterrupt:
                raise RuntimeError("release unlocked lock") from None
    assert seen == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_real_process_exits_with_the_documented_status(own_home):
    command = [sys.executable, "-m", "cli", "run", "37 * 91?", "--max-steps", "1", *scripted(PLAN, CALL)]
    finished = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=60)
    assert finished.returncode == 1 and "no answer: the step budget of 1 turns ran out" in finished.stdout
