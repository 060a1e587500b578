"""What the screens look like, pinned as SVG snapshots (`pytest --snapshot-update` to accept a change)."""

import itertools

from tests.test_tui.scripts import scripted, simple_exchange
from tui import TokentrailApp

SIZE = (140, 40)


def _app() -> TokentrailApp:
    ticks = itertools.count()
    return TokentrailApp(scripted(*simple_exchange()), clock=lambda: next(ticks) * 0.05)  # 20 tok/s, every run


async def _exchange(pilot) -> None:
    pilot.app.query_one("#prompt").value = "What is the capital of France?"
    await pilot.press("enter")
    while pilot.app.busy:
        await pilot.pause(0.02)
    table = pilot.app.query_one("#tokens")
    table.focus()
    table.move_cursor(row=6)
    await pilot.pause()


def test_main_screen_after_an_exchange(snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_exchange)


def test_settings_screen(snap_compare):
    async def open_settings(pilot) -> None:
        await pilot.press("f2")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=SIZE, run_before=open_settings)
