"""Modal screens: settings, tool approval, past conversations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static, Switch
from textual.widgets.option_list import Option

from backends import SamplingParams
from tools.registry import ApprovalRequest


@dataclass(frozen=True)
class Settings:
    sampling: SamplingParams
    constrained: bool


class SettingsScreen(ModalScreen[Settings | None]):
    """Temperature, top-p, top-k, max tokens, seed, and constrained tool calls; Esc leaves unchanged."""

    BINDINGS = [Binding("escape", "dismiss_unchanged", "cancel")]
    FIELDS = (("temperature", "temperature (0 = greedy)"), ("top_p", "top-p"), ("top_k", "top-k (0 = off)"),
              ("max_tokens", "max tokens"), ("seed", "seed (empty = random)"))

    def __init__(self, current: Settings) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        sampling = self.current.sampling
        with Vertical(id="settings-dialog"):
            yield Label("Settings", classes="title")
            with Grid(id="settings-grid"):
                for name, label in self.FIELDS:
                    value = getattr(sampling, name)
                    yield Label(label)
                    yield Input("" if value is None else str(value), id=f"setting-{name}")
                yield Label("constrained tool calls")
                yield Switch(self.current.constrained, id="setting-constrained")
            yield Static("", id="settings-error")
            with Horizontal(classes="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        self.save()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.save()

    def save(self) -> None:
        values: dict[str, Any] = {}
        for name, _ in self.FIELDS:
            raw = self.query_one(f"#setting-{name}", Input).value.strip()
            if raw:
                try:
                    values[name] = json.loads(raw)
                except json.JSONDecodeError:
                    values[name] = raw  # pydantic names the field and the problem
        try:
            # an empty seed field means random, so the old seed does not carry over
            updated = SamplingParams.model_validate({**self.current.sampling.model_dump(), "seed": None, **values})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            self.query_one("#settings-error", Static).update(f"[red]{problems}[/]")
            return
        self.dismiss(Settings(updated, self.query_one("#setting-constrained", Switch).value))

    def action_dismiss_unchanged(self) -> None:
        self.dismiss(None)


class ApprovalScreen(ModalScreen[bool]):
    """Asks before a tool that requires approval runs; the run waits on the answer."""

    BINDINGS = [Binding("y", "answer(True)", "allow"), Binding("n,escape", "answer(False)", "deny")]

    def __init__(self, request: ApprovalRequest) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        arguments = json.dumps(self.request.arguments, indent=2, ensure_ascii=False)
        with Vertical(id="approval-dialog"):
            yield Label(f"Run the tool [b]{self.request.name}[/b]?", classes="title")
            yield Static(arguments, id="approval-arguments", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Allow (y)", variant="warning", id="allow")
                yield Button("Deny (n)", variant="primary", id="deny")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "allow")

    def action_answer(self, allowed: bool) -> None:
        self.dismiss(allowed)


class ConversationsScreen(ModalScreen[str | None]):
    """Past conversations from memory, newest first; Enter reopens one."""

    BINDINGS = [Binding("escape", "dismiss(None)", "close")]

    def __init__(self, conversations: list[dict[str, Any]]) -> None:
        super().__init__()
        self.conversations = conversations

    def compose(self) -> ComposeResult:
        with Vertical(id="conversations-dialog"):
            yield Label("Past conversations", classes="title")
            if not self.conversations:
                yield Static("none saved yet", classes="dim")
            options = [Option(f"{c['updated_at'][:16].replace('T', ' ')}  {c['title']}  ({c['turns']} turns)", id=c["id"])
                       for c in self.conversations]
            yield OptionList(*options, id="conversation-list")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
