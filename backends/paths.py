"""Where tokentrail keeps its files: pulled models and the default memory database."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """$TOKENTRAIL_HOME, else $XDG_CACHE_HOME/tokentrail, else ~/.cache/tokentrail."""
    if os.environ.get("TOKENTRAIL_HOME"):
        return Path(os.environ["TOKENTRAIL_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tokentrail"


def memory_database() -> Path:
    """The memory database that `run`, `chat`, `memory` and `logs` use unless told otherwise."""
    return home() / "memory.db"
