"""Tools: typed functions a model can call, a registry that validates every call, built-ins, MCP."""

from tools.registry import ApprovalRequest, ToolRegistry, ToolResult, approve_all, deny_all
from tools.tool import SeenNumbers, Tool, ToolDefinitionError, tool

__all__ = ["ApprovalRequest", "SeenNumbers", "Tool", "ToolDefinitionError", "ToolRegistry", "ToolResult", "approve_all",
           "deny_all", "tool"]
