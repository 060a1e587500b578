"""A small MCP server for the tests, written with the SDK's FastMCP; runs over stdio."""

from mcp.server.fastmcp import FastMCP

server = FastMCP("tokentrail-test")


@server.tool()
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@server.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper() + "!"


@server.tool()
def fail(reason: str) -> str:
    """Always fails."""
    raise ValueError(reason)


if __name__ == "__main__":
    server.run("stdio")
