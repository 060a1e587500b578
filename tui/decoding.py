"""The decoding panel: each token of the current answer coloured by its probability; the
selected token's alternatives as bars; the sampling settings and live tokens per second."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from agent.events import TokenChosen
from backends import SamplingParams

BAR_WIDTH = 20


def probability_style(p: float) -> str:
    """Green for confident choices, through yellow, to red for long shots."""
    if p >= 0.8:
        return "bold green"
    if p >= 0.5:
        return "green"
    if p >= 0.25:
        return "yellow"
    if p >= 0.1:
        return "dark_orange"
    return "bold red"


def shown(token: str) -> str:
    return repr(token)[1:-1] or "∅"


def alternatives_text(event: TokenChosen) -> Text:
    text = Text()
    text.append(f"{shown(event.token)}", style="bold")
    if event.logprob is not None:
        text.append(f"  chosen with p = {math.exp(event.logprob):.1%}\n")
    for token, logprob in event.top_logprobs:
        p = math.exp(logprob)
        filled = round(p * BAR_WIDTH)
        text.append("█" * filled + "░" * (BAR_WIDTH - filled), style=probability_style(p))
        text.append(f" {p:6.1%}  ")
        text.append(shown(token) + "\n", style="bold" if token == event.token else "")
    if not event.top_logprobs:
        text.append("(the backend sent no alternatives)\n", style="dim")
    return text


def settings_line(sampling: SamplingParams, constrained: bool, speed: float | None) -> str:
    parts = [f"temp {sampling.temperature:g}", f"top-p {sampling.top_p:g}", f"top-k {sampling.top_k or 'off'}",
             f"max {sampling.max_tokens}", f"seed {sampling.seed if sampling.seed is not None else '-'}",
             "constrained" if constrained else "unconstrained"]
    if speed is not None:
        parts.append(f"{speed:.1f} tok/s")
    return " · ".join(parts)


class DecodingPanel(Vertical):
    """Token rows for the current answer's generation; selecting one shows what it beat."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.events: list[TokenChosen] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="decoding-settings")
        table: DataTable = DataTable(id="tokens", cursor_type="row", zebra_stripes=True)
        table.add_columns("#", "token", "p")
        yield table
        yield Static("select a token to see its alternatives", id="alternatives")

    def clear(self) -> None:
        self.events.clear()
        self.query_one(DataTable).clear()
        self.query_one("#alternatives", Static).update("select a token to see its alternatives")

    def add(self, event: TokenChosen) -> None:
        self.events.append(event)
        p = math.exp(event.logprob) if event.logprob is not None else None
        cell = Text(f"{p:.1%}" if p is not None else "?", style=probability_style(p) if p is not None else "dim")
        token = Text(shown(event.token or event.text), style=probability_style(p) if p is not None else "")
        self.query_one(DataTable).add_row(str(len(self.events)), token, cell)

    def show_settings(self, sampling: SamplingParams, constrained: bool, speed: float | None) -> None:
        self.query_one("#decoding-settings", Static).update(settings_line(sampling, constrained, speed))

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        if 0 <= message.cursor_row < len(self.events):
            self.query_one("#alternatives", Static).update(alternatives_text(self.events[message.cursor_row]))
