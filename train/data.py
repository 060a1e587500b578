"""Training data: chat examples in the OpenAI messages format (JSONL), checked line by line, and
tokenized with the model's own chat template so that training sees the text inference sees.

A bad line (not JSON, no messages, roles out of order, no assistant reply, too long) is reported
with its line number and skipped; nothing is trained on silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from backends import Message
from backends.schemas import explain_validation

Row = TypeVar("Row")
FOLLOWS = {"user": {"system", "user", "assistant", "tool", None}, "assistant": {"user", "tool"}, "tool": {"assistant", "tool"},
           "system": {None}}


class Renders(Protocol):
    """What encoding needs of a backend: its chat template and its tokenizer (LocalBackend)."""

    tokenizer: Any

    def render(self, messages: list[Message], tools: Any = None, add_generation_prompt: bool = True) -> str: ...


@dataclass
class Encoded:
    ids: list[int]
    trained: list[bool]  # per token: whether the loss counts it (the assistant's own tokens)
    line: int


def messages_problem(messages: list[Message]) -> str | None:
    """Why a conversation cannot be trained on, or None."""
    previous = None
    for message in messages:
        if previous not in FOLLOWS.get(message.role, set()):
            article = "an" if message.role[0] in "aeiou" else "a"
            return f"{article} {message.role} message cannot follow {previous or 'the start'}"
        previous = message.role
    if not any(m.role == "assistant" for m in messages):
        return "no assistant message to learn from"
    if messages[-1].role != "assistant":
        return f"it ends with a {messages[-1].role} message; an example ends with the assistant's reply"
    return None


class LineProblem(ValueError):
    """Why a line, read and parsed, cannot be trained on."""


def _read_jsonl(path: Path, parse: Callable[[Any], Row], missing: str) -> tuple[list[tuple[int, Row]], list[str]]:
    """(line number, parse(row)) of each usable line, and a problem per unusable one ("line 3: ...").

    parse raises KeyError for missing fields (reported as `missing`), pydantic's ValidationError for
    bad ones, and LineProblem for anything else."""
    rows, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, parse(json.loads(line))))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc.msg})")
        except KeyError:
            problems.append(f"line {number}: {missing}")
        except ValidationError as exc:
            problems.append(f"line {number}: {explain_validation(exc, 'field')}")
        except LineProblem as exc:
            problems.append(f"line {number}: {exc}")
    return rows, problems


def _checked(messages: list[Message]) -> list[Message]:
    if (problem := messages_problem(messages)) is not None:
        raise LineProblem(problem)
    return messages


def read_messages(path: Path, field: str = "messages") -> tuple[list[tuple[int, list[Message]]], list[str]]:
    """(line number, messages) of each usable line, and a problem per unusable one ("line 3: ...")."""

    def parse(row: Any) -> list[Message]:
        raw = row[field] if isinstance(row, dict) else None
        if not isinstance(raw, list) or not raw:
            raise KeyError(field)
        return _checked([Message.model_validate(m) for m in raw])

    return _read_jsonl(path, parse, f'needs "{field}", a list of messages')


def encode(backend: Renders, messages: list[Message], line: int, max_tokens: int, replies_from: int = 0) -> Encoded:
    """Token ids of the rendered conversation, marking the assistant's replies (through its end-of-turn)
    from message `replies_from` on (DPO trains on the response to a prompt, not on the prompt's turns).

    Raises ValueError when the example is longer than `max_tokens` or the template renders a
    conversation's beginning differently from the whole (then no reply can be located)."""
    full = backend.render(messages, add_generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message.role == "assistant" and i >= replies_from:
            start = len(backend.render(messages[:i], add_generation_prompt=True))
            end_text = backend.render(messages[: i + 1], add_generation_prompt=False)
            if not full.startswith(end_text):
                raise ValueError("the chat template renders the start of this conversation differently from the whole")
            spans.append((start, len(end_text)))
    encoding = backend.tokenizer.hf.encode(full, add_special_tokens=False)
    if len(encoding.ids) > max_tokens:
        raise ValueError(f"{len(encoding.ids)} tokens, over the limit of {max_tokens}")
    trained = [any(s <= a and b <= e for s, e in spans) and b > a for a, b in encoding.offsets]
    return Encoded(list(encoding.ids), trained, line)


def _as_messages(value: Any, role: str) -> list[Message]:
    if isinstance(value, str):
        return [Message(role=role, content=value)]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise KeyError(role)
    return [Message.model_validate(m) for m in value]


def read_pairs(path: Path) -> tuple[list[tuple[int, list[Message], list[Message], list[Message]]], list[str]]:
    """Preference pairs as TRL reads them: {"prompt": messages or text, "chosen": ..., "rejected": ...};
    (line, prompt, chosen, rejected) of each usable line, and a problem per unusable one."""

    def parse(row: Any) -> tuple[list[Message], list[Message], list[Message]]:
        if not isinstance(row, dict) or not {"prompt", "chosen", "rejected"} <= set(row):
            raise KeyError("prompt")
        prompt = _as_messages(row["prompt"], "user")
        chosen, rejected = _as_messages(row["chosen"], "assistant"), _as_messages(row["rejected"], "assistant")
        if chosen == rejected:
            raise LineProblem("the chosen reply equals the rejected one; there is nothing to prefer")
        _checked(prompt + chosen)
        _checked(prompt + rejected)
        return prompt, chosen, rejected

    rows, problems = _read_jsonl(path, parse, 'needs "prompt", "chosen" and "rejected"')
    return [(number, *pair) for number, pair in rows], problems
