"""What the screens look like, pinned as SVG snapshots (`pytest --snapshot-update` to accept a change)."""

import itertools

from tests.test_tui.scripts import WatchingScripted, scripted, simple_exchange
from tui import TokentrailApp

SIZE = (140, 40)


def _app(backend=None) -> TokentrailApp:
    ticks = itertools.count()
    backend = backend or scripted(*simple_exchange())
    return TokentrailApp(backend, clock=lambda: next(ticks) * 0.05)  # 20 tok/s, every run


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


def test_where_a_token_looked_one_layer(snap_compare):
    async def look(pilot) -> None:
        await _exchange(pilot)
        await pilot.press("right_square_bracket", "right_square_bracket")
        await pilot.pause()

    assert snap_compare(_app(WatchingScripted(*simple_exchange())), terminal_size=SIZE, run_before=look)


def test_settings_screen(snap_compare):
    async def open_settings(pilot) -> None:
        await pilot.press("f2")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=SIZE, run_before=open_settings)
