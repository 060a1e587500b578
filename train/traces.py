"""Training data from the agent's own runs: every model call a run made (`ModelReplied` events)
becomes a chat example, as the model saw it and as it answered.

SFT examples come from runs that were right (marked good in the chat, verified by the agent
and not marked bad, or right by a checkable answer when `tokentrail train collect` ran them),
leaving out the calls that led to an answer that failed a check on the way. DPO pairs set such
a reply against a reply to the same messages that led to a wrong answer (the same task reaches
the same prompt until the runs part).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends import Message


@dataclass
class Turn:
    messages: list[Message]
    reply: Message
    failed: bool = False  # it led to an answer that failed a check

    def key(self) -> str:
        return json.dumps([m.model_dump(exclude_none=True) for m in self.messages], sort_keys=True)


@dataclass
class Run:
    task: str
    right: bool
    turns: list[Turn]


def turns(events: Iterable[dict[str, Any] | Any]) -> list[Turn]:
    """The model calls of a run, from its events (stored dicts or event objects); the calls before a
    failed verdict led to an answer that failed, and are marked so."""
    done: list[Turn] = []
    pending: list[Turn] = []
    for event in events:
        payload = event.get("payload", event) if isinstance(event, dict) else event.model_dump()
        if payload.get("type") == "model_reply":
            messages = [Message.model_validate(m) for m in payload["messages"]]
            pending.append(Turn(messages, Message.model_validate(payload["reply"])))
        elif payload.get("type") == "verdict":
            for turn in pending:
                turn.failed = not payload.get("passed")
            done, pending = done + pending, []
    return done + pending


def runs_from_memory(memory: Any, limit: int = 100_000) -> list[Run]:
    """The finished runs of a memory's trace log; right = marked good in the chat, or verified by the
    agent and not marked bad (the user's verdict outranks the agent's)."""
    return [Run(row["task"], _right(row), turns(memory.traces.events(row["id"])))
            for row in memory.traces.runs(limit) if row["status"] in ("verified", "done", "failed")]


def _right(row: dict[str, Any]) -> bool:
    feedback = row.get("feedback")
    return feedback == "good" or (feedback is None and bool(row["verified"]))


def sft_examples(runs: Iterable[Run]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for run in runs:
        for turn in (t for t in run.turns if run.right and not t.failed):
            row = {"messages": [m.model_dump(exclude_none=True) for m in [*turn.messages, turn.reply]]}
            key = json.dumps(row, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(row)
    return out


def dpo_pairs(runs: list[Run]) -> list[dict[str, Any]]:
    """For each prompt a right run and a wrong run of one task both answered, differently: a pair."""
    pairs, seen = [], set()
    by_task: dict[str, list[Run]] = {}
    for run in runs:
        by_task.setdefault(run.task, []).append(run)
    for group in by_task.values():
        wrong = {t.key(): t for run in group for t in run.turns if not run.right or t.failed}
        for run in (r for r in group if r.right):
            for turn in (t for t in run.turns if not t.failed):
                other = wrong.get(turn.key())
                if other is None or other.reply == turn.reply or (turn.key(), other.reply.content) in seen:
                    continue
                seen.add((turn.key(), other.reply.content))
                pairs.append({"prompt": [m.model_dump(exclude_none=True) for m in turn.messages],
                              "chosen": [turn.reply.model_dump(exclude_none=True)],
                              "rejected": [other.reply.model_dump(exclude_none=True)]})
    return pairs


def write_datasets(runs: list[Run], out: Path, append: bool = False) -> tuple[Path, Path, int, int]:
    """sft.jsonl and dpo.jsonl in `out` (appended to with `append`: a long collection keeps what it
    has as it goes); returns their paths and how many lines this call wrote."""
    out.mkdir(parents=True, exist_ok=True)
    examples, pairs = sft_examples(runs), dpo_pairs(runs)
    sft_path, dpo_path = out / "sft.jsonl", out / "dpo.jsonl"
    for path, rows in ((sft_path, examples), (dpo_path, pairs)):
        with open(path, "a" if append else "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return sft_path, dpo_path, len(examples), len(pairs)
