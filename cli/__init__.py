"""The `tokentrail` command line: every command, over the agent, the backends, memory and the TUI."""

from cli.main import main

__all__ = ["main"]
