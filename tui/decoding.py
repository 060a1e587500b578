"""The decoding panel: each token of the current answer coloured by its probability; the
selected token's alternatives as bars, and where it looked; the sampling settings and live
tokens per second. A number key continues the answer from one of the selected token's
alternatives (a branch); `o` goes back and forth between the original and its branches."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message as UIMessage
from textual.widgets import DataTable, Static

from agent.events import TokenChosen
from backends import SamplingParams
from tui.looked import looked_text

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
    for number, (token, logprob) in enumerate(event.top_logprobs, start=1):
        p = math.exp(logprob)
        text.append(f"{number} " if number <= 9 and event.top_token_ids else "  ", style="dim")
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


class BranchRequested(UIMessage):
    """Continue the reply from `token_ids` (its first tokens, the last one an alternative it beat)."""

    def __init__(self, token_ids: list[int]) -> None:
        super().__init__()
        self.token_ids = token_ids


class DecodingPanel(Vertical):
    """Token rows for the current answer's generation; selecting one shows what it beat and where it looked."""

    BINDINGS = [
        Binding("left_square_bracket", "layer(-1)", "layer -", show=False),
        Binding("right_square_bracket", "layer(1)", "layer +", show=False),
        Binding("a", "all_layers", "all layers", show=False),
        Binding("o", "switch_version", "original/branch", show=False),
        *(Binding(str(n), f"branch({n})", f"branch {n}", show=False) for n in range(1, 10)),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.versions: list[tuple[str, list[TokenChosen]]] = [("original", [])]
        self.shown = 0
        self.prompt_tokens: list[str] = []
        self.looked_layer: int | None = None  # None: all layers averaged

    @property
    def events(self) -> list[TokenChosen]:
        return self.versions[self.shown][1]

    def compose(self) -> ComposeResult:
        yield Static("", id="decoding-settings")
        table: DataTable = DataTable(id="tokens", cursor_type="row", zebra_stripes=True)
        table.add_columns("#", "token", "p")
        yield table
        yield Static("", id="version")
        yield Static("select a token to see its alternatives", id="alternatives")
        with VerticalScroll(id="looked-scroll"):
            yield Static("", id="looked")

    def clear(self) -> None:
        self.versions, self.shown, self.prompt_tokens = [("original", [])], 0, []
        self.query_one(DataTable).clear()
        self.query_one("#version", Static).update("")
        self.query_one("#alternatives", Static).update("select a token to see its alternatives")
        self.query_one("#looked", Static).update("")

    def add(self, event: TokenChosen, version: int = 0) -> None:
        """A token of the original (0) or of a branch; rows are added when that version is shown."""
        if version >= len(self.versions):  # a branch of an answer the panel no longer shows
            return
        if event.prompt_tokens is not None and version == 0:
            self.prompt_tokens = event.prompt_tokens
        self.versions[version][1].append(event)
        if version == self.shown:
            self._add_row(event)
            if version:
                self._show_version()

    def _add_row(self, event: TokenChosen) -> None:
        table = self.query_one(DataTable)
        p = math.exp(event.logprob) if event.logprob is not None else None
        cell = Text(f"{p:.1%}" if p is not None else "?", style=probability_style(p) if p is not None else "dim")
        token = Text(shown(event.token or event.text), style=probability_style(p) if p is not None else "")
        table.add_row(str(table.row_count + 1), token, cell)

    def show_settings(self, sampling: SamplingParams, constrained: bool, speed: float | None) -> None:
        self.query_one("#decoding-settings", Static).update(settings_line(sampling, constrained, speed))

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        self._show_token(message.cursor_row)

    def _show_token(self, row: int) -> None:
        if 0 <= row < len(self.events):
            event = self.events[row]
            self.query_one("#alternatives", Static).update(alternatives_text(event))
            context = self.prompt_tokens + [e.token or e.text for e in self.events[:row]]
            self.query_one("#looked", Static).update(looked_text(event, context, self.looked_layer))

    def _selected(self) -> int:
        return self.query_one(DataTable).cursor_row

    def action_layer(self, step: int) -> None:
        event = self.events[self._selected()] if 0 <= self._selected() < len(self.events) else None
        if event is None or event.attention is None:
            return
        layers = len(event.attention.layers)
        if self.looked_layer is None:  # from all layers, ] goes to the first and [ to the last
            self.looked_layer = 0 if step > 0 else layers - 1
        else:
            self.looked_layer = (self.looked_layer + step) % layers
        self._show_token(self._selected())

    def action_all_layers(self) -> None:
        self.looked_layer = None
        self._show_token(self._selected())

    def action_branch(self, number: int) -> None:
        row = self._selected()
        if not 0 <= row < len(self.events):
            return
        event = self.events[row]
        if number > len(event.top_token_ids):
            why = "it had no alternatives (a forced token, or logprobs are off)" if not event.top_token_ids else \
                f"it had {len(event.top_token_ids)} alternatives"
            self.notify(f"no branch {number} from token #{row + 1}: {why}", severity="warning")
            return
        chosen = event.top_token_ids[number - 1]
        if chosen == event.token_id:
            self.notify(f"alternative {number} is the token it chose; pick another", severity="warning")
            return
        token, logprob = event.top_logprobs[number - 1]
        start = event.model_copy(update={"token": token, "text": token, "token_id": chosen, "logprob": logprob})
        self.versions.append((f"branch from #{row + 1} {token!r}", [*self.events[:row], start]))
        self.post_message(BranchRequested([e.token_id for e in self.versions[-1][1]]))
        self._switch_to(len(self.versions) - 1)

    def abandon_branch(self) -> None:
        """The branch just asked for could not start: back to the original."""
        if len(self.versions) > 1:
            self.versions.pop()
            self._switch_to(0)

    def action_switch_version(self) -> None:
        if len(self.versions) > 1:
            self._switch_to((self.shown + 1) % len(self.versions))

    def _switch_to(self, version: int) -> None:
        row, self.shown = self._selected(), version
        self.query_one(DataTable).clear()
        for event in self.events:
            self._add_row(event)
        self.query_one(DataTable).move_cursor(row=row)
        self._show_version()
        self._show_token(row)

    def _show_version(self) -> None:
        label = self.versions[self.shown][0]
        text = "".join(e.text for e in self.events)
        self.query_one("#version", Static).update(
            Text(f"{label} ({self.shown + 1}/{len(self.versions)}, o switches): ", style="bold") + Text(text[-400:]))
