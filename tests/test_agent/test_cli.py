import subprocess
import sys

from click.testing import CliRunner

from agent.cli import main


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


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "generate", "-b", "scripted", "hello"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout == "You said: hello\n"
