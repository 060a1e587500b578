"""The chat pane's parts: the input with history, and reading the answer out of a half-written act turn."""

from __future__ import annotations

import json

from textual.binding import Binding
from textual.widgets import Input

_ANSWER_OPENING = '{"answer": "'


def partial_answer(text: str) -> str | None:
    """The answer so far in a streamed act turn `{"answer": "...`, or None when the turn is not an answer.

    The JSON string is decoded up to the last complete character; an escape cut in half waits
    for its next token.
    """
    if not text.startswith(_ANSWER_OPENING):
        return None
    body, out, i = text[len(_ANSWER_OPENING):], [], 0
    while i < len(body):
        char = body[i]
        if char == '"':
            break
        if char != "\\":
            out.append(char)
            i += 1
            continue
        width = 6 if body[i + 1 : i + 2] == "u" else 2
        if i + width > len(body):
            break
        try:
            out.append(json.loads(f'"{body[i : i + width]}"'))
        except json.JSONDecodeError:
            out.append(body[i : i + width])
        i += width
    return "".join(out)


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
