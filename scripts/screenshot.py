"""Saves an SVG screenshot of a real chat session (default model, calculator tool) for the README: the
answer's first digit selected, with its alternatives and where it looked.

    .venv/bin/python scripts/screenshot.py docs/chat.svg
"""

import asyncio
import sys

from backends import load_backend
from tools import ToolRegistry
from tui import TokentrailApp


async def main(path: str) -> None:
    tools = ToolRegistry([ToolRegistry.with_builtins(".").get("calculator")])
    app = TokentrailApp(load_backend("local"), tools=tools)
    async with app.run_test(size=(150, 42)) as pilot:
        app.query_one("#prompt").value = "What is 37 * 91? Use the calculator."
        await pilot.press("enter")
        await pilot.pause(0.5)
        while app.busy:
            await pilot.pause(0.2)
        table = app.query_one("#tokens")
        table.focus()
        events = app.query_one("#decoding").events
        digit = next((i for i, e in enumerate(events) if e.token.strip().isdigit()), table.row_count - 1)
        table.move_cursor(row=digit)
        await pilot.pause(0.3)
        app.save_screenshot(path)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "docs/chat.svg"))
