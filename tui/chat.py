"""The chat pane's input, with the history of earlier messages."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class HistoryInput(Input):
    """An input box that recalls earlier messages with Up and Down."""

    BINDINGS = [Binding("up", "older", "older message", show=False), Binding("down", "newer", "newer message", show=False)]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history: list[str] = []
        self._position = 0

    def remember(self, text: str) -> None:
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._position = len(self.history)

    def action_older(self) -> None:
        if self._position > 0:
            self._position -= 1
            self.value = self.history[self._position]
            self.cursor_position = len(self.value)

    def action_newer(self) -> None:
        if self._position < len(self.history):
            self._position += 1
            self.value = self.history[self._position] if self._position < len(self.history) else ""
            self.cursor_position = len(self.value)
