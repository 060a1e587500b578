"""ToolRegistry: the tools a run may call, and `call`, which never raises for the model's mistakes.

Every way a model can get a call wrong (an unknown name, bad JSON, arguments that fail
validation, a tool that raises or hangs, an unapproved tool) comes back as a ToolResult with
an error written for the model to read and correct.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from backends.schemas import explain_validation
from tools.tool import ArgumentsError, SeenNumbers, Tool, to_text

ENTRY_POINT_GROUP = "tokentrail.tools"
MAX_OUTPUT_CHARS = 16_000


class ToolResult(BaseModel):
    ok: bool
    output: str = ""
    error: str | None = None
    duration: float = 0.0  # seconds


class ApprovalRequest(BaseModel):
    name: str
    arguments: dict[str, Any]


# True approves; False refuses; a string refuses and says what would approve it ("pass --yes").
Approver = Callable[[ApprovalRequest], bool | str]


def deny_all(request: ApprovalRequest) -> bool:
    return False


def approve_all(request: ApprovalRequest) -> bool:
    return True


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [truncated {len(text) - limit} characters]"


def _run_with_timeout(tool: Tool, kwargs: dict[str, Any]) -> Any:
    """Runs the tool in a worker thread so a hang cannot stall the agent; async tools get their own loop."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(tool.fn(**kwargs)) if tool.is_async else tool.fn(**kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=f"tool-{tool.name}", daemon=True)
    worker.start()
    worker.join(tool.timeout)
    if worker.is_alive():
        raise TimeoutError(f"tool '{tool.name}' did not finish within {tool.timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class ToolRegistry:
    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        approver: Approver | None = None,
        max_output_chars: int = MAX_OUTPUT_CHARS,
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self.approver = approver
        self.max_output_chars = max_output_chars
        self._closers: list[Callable[[], None]] = []
        for item in tools:
            self.register(item)

    def register(self, item: Tool | Callable[..., Any], replace: bool = False) -> Tool:
        tool = item if isinstance(item, Tool) else Tool(item)
        if tool.name in self._tools and not replace:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self):
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self, seen: SeenNumbers | None = None) -> list[dict[str, Any]]:
        """Every tool's schema; `seen` narrows grounded arguments (Tool's `grounded`)."""
        return [tool.schema(seen) for tool in self._tools.values()]

    def call(self, name: str, arguments: str | dict[str, Any] | None) -> ToolResult:
        start = time.perf_counter()

        def failed(message: str) -> ToolResult:
            return ToolResult(ok=False, error=message, duration=time.perf_counter() - start)

        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return failed(f"unknown tool '{name}'; the tools are: {known}")
        if arguments is None or arguments == "":
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as exc:
                return failed(f"arguments are not valid JSON ({exc.msg} at position {exc.pos}); send a JSON object")
        if not isinstance(arguments, dict):
            return failed(f"arguments must be a JSON object, not {type(arguments).__name__}")
        try:
            kwargs = tool.validate(arguments)
        except ValidationError as exc:
            return failed("invalid arguments: " + explain_validation(exc))
        except ArgumentsError as exc:
            return failed(str(exc))
        verdict = self._approval(tool, arguments) if tool.requires_approval else True
        if verdict is not True:
            why = f": {verdict}" if isinstance(verdict, str) and verdict else ""
            return failed(f"the user did not approve running '{name}' with these arguments{why}")
        try:
            value = _run_with_timeout(tool, kwargs)
        except TimeoutError as exc:
            return failed(str(exc))
        except Exception as exc:
            return failed(f"{type(exc).__name__}: {exc}")  # what went wrong, not where in the tool's code
        return ToolResult(ok=True, output=_cap(to_text(value), self.max_output_chars), duration=time.perf_counter() - start)

    async def acall(self, name: str, arguments: str | dict[str, Any] | None) -> ToolResult:
        return await asyncio.to_thread(self.call, name, arguments)

    def _approval(self, tool: Tool, arguments: dict[str, Any]) -> bool | str:
        if self.approver is None:
            return False
        try:
            verdict = self.approver(ApprovalRequest(name=tool.name, arguments=arguments))
        except Exception:
            return False  # an approver that breaks says no
        return verdict if isinstance(verdict, str) else bool(verdict)

    @classmethod
    def from_entry_points(cls, approver: Approver | None = None) -> ToolRegistry:
        """Tools that installed packages register under the entry point group `tokentrail.tools`.

        An entry point may name a Tool, a plain function, or a list of either.
        """
        registry = cls(approver=approver)
        registry.load_entry_points()
        return registry

    def load_entry_points(self) -> list[str]:
        """Registers third-party tools; returns a line per plugin that failed, instead of raising."""
        problems = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
                for item in loaded if isinstance(loaded, (list, tuple)) else [loaded]:
                    self.register(item)
            except Exception as exc:
                problems.append(f"tool plugin {ep.name!r} ({ep.value}): {type(exc).__name__}: {exc}")
        return problems

    @classmethod
    def with_builtins(cls, workspace: str | Path = ".", memory: Any = None, approver: Approver | None = None) -> ToolRegistry:
        from tools.builtins import builtin_tools

        return cls(builtin_tools(Path(workspace), memory), approver=approver)

    @classmethod
    def from_mcp(cls, command: str, *args: str, env: dict[str, str] | None = None, approver: Approver | None = None,
                 timeout: float = 30.0) -> ToolRegistry:
        """Connects to an MCP server over stdio and registers its tools; `close()` stops the server."""
        from tools.mcp_bridge import MCPConnection

        connection = MCPConnection(command, list(args), env=env, timeout=timeout)
        registry = cls(connection.tools(), approver=approver)
        registry._closers.append(connection.close)
        return registry

    def include(self, other: ToolRegistry) -> None:
        """Takes over another registry's tools, and its connections to close."""
        for item in other:
            self.register(item)
        self._closers += other._closers
        other._closers = []

    def close(self) -> None:
        for closer in self._closers:
            closer()
        self._closers.clear()

    def __enter__(self) -> ToolRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
