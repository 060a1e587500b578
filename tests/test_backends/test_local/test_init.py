"""What importing the local engine sets up before torch loads."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def spin_count(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    run = subprocess.run([sys.executable, "-c", code + "; print(os.environ.get('GOMP_SPINCOUNT'))"],
                         env=clean | {"PYTHONPATH": str(ROOT)} | env, capture_output=True, text=True, check=True)
    return run.stdout.strip()


def test_openmp_threads_spin_briefly_unless_the_user_said_otherwise():
    assert spin_count("import os, backends.local") == "1000"
    assert spin_count("import os, backends.local", GOMP_SPINCOUNT="50") == "50"
    assert spin_count("import os, backends.local", OMP_WAIT_POLICY="passive") == "None"
    assert spin_count("import os, torch, backends.local") == "None"  # too late: libgomp has read it
