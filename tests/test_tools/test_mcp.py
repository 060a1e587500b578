import sys
from pathlib import Path

import pytest

from tools import ToolRegistry
from tools.mcp_bridge import MCPError

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def test_mcp_server_tools_are_ordinary_tools():
    with ToolRegistry.from_mcp(sys.executable, SERVER) as registry:
        assert registry.names() == ["multiply", "shout", "fail"]
        schema = registry.get("multiply").schema()["function"]
        assert schema["description"] == "Multiply two integers." and schema["parameters"]["required"] == ["a", "b"]
        assert registry.call("multiply", '{"a": 6, "b": 7}').output == "42"
        assert registry.call("shout", {"text": "hi"}).output == "HI!"
        failed = registry.call("fail", {"reason": "nope"})
        assert not failed.ok and "nope" in failed.error
        missing = registry.call("multiply", {"a": 1})
        assert not missing.ok and "argument 'b' is required" in missing.error
        assert "unexpected argument 'c'" in registry.call("multiply", {"a": 1, "b": 2, "c": 3}).error


def test_a_server_that_cannot_start_is_a_clear_error(tmp_path):
    with pytest.raises(MCPError, match="could not start the MCP server"):
        ToolRegistry.from_mcp(sys.executable, str(tmp_path / "no_such_server.py"), timeout=10)
