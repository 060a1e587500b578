"""The trace panel: each turn of the conversation as a tree of plan steps, tool calls with
their results, verdicts with reasons, replans and memory hits."""

from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from agent.events import (
    ContextTrimmed,
    ErrorEvent,
    Event,
    Final,
    MemoryRecalled,
    PlanMade,
    RunStarted,
    Steered,
    ToolCalled,
    ToolReturned,
    Verdict,
)

LEAF_CHARS = 160


def _short(text: str, limit: int = LEAF_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class TraceTree(Tree):
    def __init__(self, **kwargs) -> None:
        super().__init__("conversation", **kwargs)
        self.show_root = False
        self._turn: TreeNode | None = None
        self._calls: dict[str, TreeNode] = {}

    def record(self, event: Event) -> None:
        """Adds what the event says to the tree; token and phase events are not shown here."""
        if isinstance(event, RunStarted):
            self._turn = self.root.add(Text(f"turn {len(self.root.children) + 1}: {_short(event.task, 60)}", style="bold"),
                                       expand=True)
            self._calls.clear()
            return
        turn = self._turn if self._turn is not None else self.root
        if isinstance(event, MemoryRecalled):
            node = turn.add(f"memory: {len(event.hits)} hits", expand=bool(event.hits))
            for hit in event.hits:
                why = f" ({hit['why']})" if hit.get("why") else ""
                node.add_leaf(f"[{hit['chunk_id']}] {hit['source']}{why}: {_short(hit['text'], 100)}")
        elif isinstance(event, PlanMade):
            label = "direct answer, no plan" if event.direct else "replan" if event.replan else "plan"
            node = turn.add(Text(label, style="magenta"), expand=True)
            for number, step in enumerate(event.steps, start=1):
                node.add_leaf(f"{number}. {_short(step)}")
        elif isinstance(event, ToolCalled):
            label = f"{event.name}({_short(json.dumps(event.arguments, ensure_ascii=False), 100)})"
            self._calls[event.id] = turn.add(Text("tool ", style="cyan") + Text(label), expand=True)
        elif isinstance(event, ToolReturned):
            node = self._calls.get(event.id, turn)
            took = f" ({event.duration * 1000:.0f} ms)"
            if event.ok:
                node.add_leaf(Text("→ ", style="green") + Text(_short(event.output) + took))
            else:
                node.add_leaf(Text("✗ ", style="red") + Text(_short(event.error or "failed") + took, style="red"))
        elif isinstance(event, Verdict):
            label = Text(f"verdict ({event.by}): ") + Text("passed" if event.passed else "failed",
                                                           style="green" if event.passed else "yellow")
            node = turn.add(label, expand=True)
            for reason in event.reasons:
                node.add_leaf(_short(reason))
            if event.mended_by:
                node.add_leaf(Text(f"mended by {', '.join(event.mended_by)}; the model wrote: {_short(event.model_answer or '')}",
                                   style="dim"))
        elif isinstance(event, Steered):
            turn.add_leaf(Text(f"next turn {event.tool_choice} ({event.policy}): {_short(event.why)}", style="dim"))
        elif isinstance(event, ContextTrimmed):
            turn.add_leaf(f"context: {event.action.replace('_', ' ')}, {event.tokens_before} → {event.tokens_after} tokens")
        elif isinstance(event, ErrorEvent):
            turn.add_leaf(Text(f"error: {_short(event.message)}", style="red"))
        elif isinstance(event, Final):
            label = "answer (verified)" if event.verified else "answer (not verified)" if event.answer else "no answer"
            turn.add_leaf(Text(label, style="bold green" if event.verified else "bold yellow"))
