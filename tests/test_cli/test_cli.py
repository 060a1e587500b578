import subprocess
import sys

from click.testing import CliRunner

from cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_help_and_version():
    assert "generate" in run("--help").output
    result = run("--version")
    assert result.exit_code == 0 and "tokentrail, version" in result.output


def test_generate_streams_scripted_reply():
    result = run("generate", "--backend", "scripted", "hi")
    assert result.exit_code == 0, result.output
    assert result.output == "You said: hi\n"


def test_generate_passes_backend_options_and_stops():
    result = run("generate", "-b", "scripted", "-o", 'replies=["a b c STOP d"]', "--stop", "STOP", "x")
    assert result.output == "a b c \n"


def test_generate_errors_are_clean():
    result = run("generate", "-b", "nope", "hi")
    assert result.exit_code == 1 and "unknown backend 'nope'" in result.output
    result = run("generate", "-b", "scripted", "--temperature", "-1", "hi")
    assert result.exit_code == 2 and "temperature" in result.output
    result = run("generate", "-b", "scripted", "-o", "novalue", "hi")
    assert result.exit_code == 2 and "KEY=VALUE" in result.output
    assert "Traceback" not in result.output


def test_precision_flag(tiny_models):
    _, gguf, _ = tiny_models["qwen2"]
    for precision in ("fast", "exact", "int8"):
        result = run("generate", "-m", str(gguf), "--precision", precision, "-t", "0", "-n", "3", "hello")
        assert result.exit_code == 0, result.output
    bad = run("generate", "-m", str(gguf), "--precision", "half", "hi")
    assert bad.exit_code == 2 and "'half' is not one of 'exact', 'fast', 'int8', 'int4'" in bad.output
    elsewhere = run("generate", "-b", "scripted", "--precision", "exact", "hi")
    assert elsewhere.exit_code == 2 and "applies to the local backend, not 'scripted'" in elsewhere.output
    for command in ("run", "chat", "serve"):
        assert "--precision" in run(command, "--help").output


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "cli", "generate", "-b", "scripted", "hello"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout == "You said: hello\n"


def test_generate_with_a_local_model_file(tiny_models):
    gguf = tiny_models["llama"][1]
    result = run("generate", "--model", str(gguf), "-n", "5", "--seed", "1", "hello")
    assert result.exit_code == 0, result.output
    assert result.output.endswith("\n") and "[stopped at --max-tokens 5]" in result.output


def test_generate_with_a_broken_model_is_a_clean_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    result = run("generate", "--model", str(bad), "hi")
    assert result.exit_code == 1 and "bad.gguf: not a readable GGUF file" in result.output


def test_models_lists_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKENTRAIL_HOME", str(tmp_path))
    result = run("models")
    assert f"cache: {tmp_path / 'models'}" in result.output
    assert "smollm2" in result.output and "not pulled" in result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[2:] if line.strip()}
    assert rows["qwen2.5-coder-1.5b"][1:5] == ["1,117", "MB", "qwen2", "Q4_K_M"]
    assert rows["gemma3-270m"][3] == "gemma3" and "qwen2.5-coder-0.5b" in rows
    assert "hf:OWNER/REPO[:FILE]" in result.output
    failed = run("pull", "nope")
    assert failed.exit_code == 1 and "known models: smollm2" in failed.output


def test_chat_loop_keeps_the_conversation():
    from io import StringIO

    from rich.console import Console

    from backends import SamplingParams
    from backends.scripted import ScriptedBackend
    from cli.chat_repl import chat_loop

    lines = iter(["hello", "", "/reset", "again", "/quit"])
    backend = ScriptedBackend(replies=["Hi there.", "Hello again."])
    out = StringIO()
    messages = chat_loop(backend, SamplingParams(), read=lambda _: next(lines), console=Console(file=out))
    assert [m.content for m in messages] == ["again", "Hello again."]
    assert "Hi there." in out.getvalue() and "conversation cleared" in out.getvalue()
    assert len(backend.requests[1].messages) == 1  # /reset really cleared the history


def test_tools_lists_calls_and_bridges_mcp(tmp_path):
    import json
    import shlex
    from pathlib import Path

    listing = run("tools", "--workspace", str(tmp_path))
    assert listing.exit_code == 0 and "calculator(expression)" in listing.output
    assert "write_file(path, content)  (asks approval)" in listing.output
    schemas = json.loads(run("tools", "-w", str(tmp_path), "--json").output)
    assert {s["function"]["name"] for s in schemas} >= {"calculator", "read_file", "python"}
    assert run("tools", "-w", str(tmp_path), "call", "calculator", '{"expression": "6*7"}').output == "42\n"
    denied = run("tools", "-w", str(tmp_path), "call", "write_file", '{"path": "a.txt", "content": "x"}')
    assert denied.exit_code == 1 and "did not approve" in denied.output
    approved = run("tools", "-w", str(tmp_path), "call", "write_file", '{"path": "a.txt", "content": "x"}', "--yes")
    assert approved.exit_code == 0 and (tmp_path / "a.txt").read_text() == "x"
    server = Path(__file__).parents[1] / "test_tools" / "mcp_server.py"
    with_mcp = run("tools", "-w", str(tmp_path), "--mcp", f"{shlex.quote(sys.executable)} {shlex.quote(str(server))}")
    assert "multiply(a, b)" in with_mcp.output


def test_run_prints_the_loop_as_it_happens(tmp_path):
    import json

    replies = [json.dumps({"steps": ["Compute it"]}),
               json.dumps({"tool_calls": [{"name": "calculator", "arguments": {"expression": "37 * 91"}}]}),
               json.dumps({"answer": "3367"})]
    db = tmp_path / "m.db"
    result = run("run", "What is 37 * 91?", "-b", "scripted", "-o", f"replies={json.dumps(replies)}",
                 "--memory", str(db), "-w", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == ["plan:", "  1. Compute it"]
    assert '-> calculator({"expression": "37 * 91"})' in result.output and "<- 3367" in result.output
    assert "verdict (checks): passed" in result.output
    assert lines[-1] == "answer (verified): 3367"
    assert "verified" in run("logs", "--db", str(db)).output
    as_json = run("run", "What is 37 * 91?", "-b", "scripted", "-o", f"replies={json.dumps(replies)}", "--json",
                  "-w", str(tmp_path))
    events = [json.loads(line) for line in as_json.output.splitlines()]
    assert events[0]["type"] == "run_started"
    assert events[-1] == {"type": "final", "answer": "3367", "verified": True, "reason": ""}
    bad = run("run", "task", "-b", "scripted", "--tools", "calculator,nope")
    assert bad.exit_code == 2 and "unknown tools ['nope']" in bad.output


def test_run_shows_an_answer_a_check_mended_and_what_the_model_wrote(tmp_path):
    import json

    replies = [json.dumps({"steps": ["Compute it"]}),
               json.dumps({"tool_calls": [{"name": "calculator", "arguments": {"expression": "37 * 91"}}]}),
               json.dumps({"answer": "37 * 91 = 3376"}), json.dumps({"passed": True, "reasons": []})]
    result = run("run", "What is 37 * 91?", "-b", "scripted", "-o", f"replies={json.dumps(replies)}", "-w", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "  mended by sums_hold; the model wrote: 37 * 91 = 3376" in result.output
    assert result.output.splitlines()[-1] == "answer (verified): 37 * 91 = 3367"
