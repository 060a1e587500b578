"""Runs model-written Python in a subprocess with a time and memory limit.

This is isolation from the agent's process, not a security sandbox: the code can do what
the user can. That is why the tool requires approval.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TIMEOUT = 10.0
MEMORY_BYTES = 512 * 1024 * 1024
MAX_OUTPUT = 16_000


def _limit_memory() -> None:  # runs in the child before exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def python_tool(workspace: Path):
    def python(code: str) -> str:
        """Run Python code and return what it prints (stdout and stderr). Runs in the workspace folder.

        Args:
            code: A complete Python program; print what you want to see.
        """
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-c", code],
                cwd=workspace, capture_output=True, text=True, timeout=TIMEOUT,
                preexec_fn=_limit_memory if sys.platform != "win32" else None,
                env={"PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "utf-8"},
            )
        except subprocess.TimeoutExpired:
            return f"error: the code ran longer than {TIMEOUT:g} s and was stopped"
        output = (done.stdout + (("\n" if done.stdout else "") + done.stderr if done.stderr else ""))[:MAX_OUTPUT]
        status = "" if done.returncode == 0 else f"\n(exit code {done.returncode})"
        return (output or "(no output)") + status

    return python
