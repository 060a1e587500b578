"""`tokentrail chat` in a real terminal (tmux) on the real default model: type a question, read the answer."""

import shutil
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.model


def _screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def _wait_for(session: str, predicate, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = _screen(session)
        if predicate(screen):
            return screen
        time.sleep(0.5)
    pytest.fail(f"the screen never showed what was expected; last screen:\n{screen}")


def test_chat_answers_a_question_in_tmux(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed, so there is no real terminal to drive")
    from backends.local.model_cache import pull

    pull("smollm2")
    session = f"tokentrail-{uuid.uuid4().hex[:8]}"
    command = f"{sys.executable} -m cli chat --memory {tmp_path / 'memory.db'}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "45", command], check=True)
    try:
        _wait_for(session, lambda s: "│ ready" in s, timeout=120)
        subprocess.run(["tmux", "send-keys", "-t", session, "What is 37 * 91? Use the calculator.", "Enter"], check=True)
        # the answer pane and the trace's last node ("answer (verified)") are drawn by separate messages
        screen = _wait_for(session, lambda s: ("verified" in s or "no answer" in s) and "answer (" in s, timeout=240)
        assert "What is 37 * 91? Use the calculator." in screen
        assert "calculator(" in screen  # the trace tree shows the tool call
        assert "3367" in screen
        assert "tok/s" in screen and "context" in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
