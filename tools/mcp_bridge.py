"""MCP servers over stdio, through the official `mcp` SDK, exposed as ordinary tools.

The SDK is asynchronous and its session must live in one event loop, so the connection
owns a background thread running that loop; tool calls are submitted to it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from concurrent.futures import Future
from contextlib import AsyncExitStack
from typing import Any, TextIO

from tools.tool import Tool


class MCPError(RuntimeError):
    pass


def _errlog() -> TextIO:
    """Where the server's stderr goes: ours, unless it is not a real file (a test runner's capture)."""
    try:
        sys.stderr.fileno()
        return sys.stderr
    except (AttributeError, OSError, ValueError):
        return sys.__stderr__


class MCPConnection:
    def __init__(self, command: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 30.0) -> None:
        self.command, self.args, self.env, self.timeout = command, args, env, timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"mcp-{command}", daemon=True)
        self._thread.start()
        self._stack: AsyncExitStack | None = None
        self._session: Any = None
        try:
            self._listed = self._submit(self._connect()).result(timeout)
        except Exception as exc:
            self.close()
            raise MCPError(f"could not start the MCP server `{command} {' '.join(args)}`: {type(exc).__name__}: {exc}") from exc

    def _submit(self, coroutine: Any) -> Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _connect(self) -> list[Any]:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        self._stack = AsyncExitStack()
        params = StdioServerParameters(command=self.command, args=self.args, env=self.env)
        read, write = await self._stack.enter_async_context(stdio_client(params, errlog=_errlog()))
        self._session = await self._stack.enter_async_context(ClientSession(read, write))
        await self._session.initialize()
        return (await self._session.list_tools()).tools

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        result = self._submit(self._session.call_tool(name, arguments)).result(self.timeout)
        text = "\n".join(getattr(block, "text", f"[{getattr(block, 'type', 'content')}]") for block in result.content)
        if result.isError:
            raise MCPError(text or f"the MCP tool '{name}' failed")
        return text

    def tools(self) -> list[Tool]:
        def make(spec: Any) -> Tool:
            def run(**arguments: Any) -> str:
                return self.call(spec.name, arguments)

            return Tool(run, name=spec.name, description=spec.description or "",
                        parameters=spec.inputSchema or {"type": "object", "properties": {}}, timeout=self.timeout)

        return [make(spec) for spec in self._listed]

    def close(self) -> None:
        if self._stack is not None:
            try:
                self._submit(self._stack.aclose()).result(10)
            except Exception:
                pass  # the server may already be gone
            self._stack = None
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
