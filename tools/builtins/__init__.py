"""The built-in tools: calculator, clock, workspace files, python, and memory."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tools.builtins.calculator import calculator, grounded_expression
from tools.builtins.python_tool import python_tool
from tools.builtins.workspace import Workspace, file_tools
from tools.tool import Tool


def current_time(timezone: str = "UTC") -> str:
    """The current date and time.

    Args:
        timezone: An IANA time zone name such as "UTC" or "Europe/Paris".
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{timezone}'; use an IANA name such as 'Europe/Paris'") from None
    return datetime.now(zone).isoformat(timespec="seconds")


def memory_tools(memory: Any) -> list:
    def remember(text: str) -> str:
        """Save a note to long-term memory, to recall in later tasks.

        Args:
            text: The fact or note to keep.
        """
        if memory is None:
            raise RuntimeError("no memory is attached to this agent")
        memory.remember(text)
        return "remembered"

    def recall(query: str) -> str:
        """Search long-term memory and documents for what is relevant to a query.

        Args:
            query: What to look for.
        """
        if memory is None:
            raise RuntimeError("no memory is attached to this agent")
        hits = memory.search(query, k=5)
        return "\n".join(f"[{h.chunk_id}] ({h.source}) {h.text}" for h in hits) or "nothing relevant found"

    return [remember, recall]


def builtin_tools(workspace: Path, memory: Any = None) -> list[Tool]:
    root = Workspace(workspace)
    if not root.root.is_dir():
        raise ValueError(f"workspace {workspace} is not a folder")
    list_files, read_file, search_files, write_file = file_tools(root)

    def folders() -> dict[str, list[str] | None]:
        paths = root.paths()
        return {"path": paths[0] if paths else None}

    def files() -> dict[str, list[str] | None]:
        paths = root.paths()
        return {"path": paths[1] if paths else None}

    return [
        Tool(calculator, timeout=5, grounded={"expression": grounded_expression}),
        Tool(current_time),
        Tool(list_files, choices=folders),
        Tool(read_file, choices=files),
        Tool(search_files, choices=folders),
        Tool(write_file, requires_approval=True),
        Tool(python_tool(root.root), requires_approval=True, timeout=15),
        *(Tool(fn) for fn in memory_tools(memory)),
    ]
