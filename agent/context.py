"""Keeping the prompt inside the backend's context window.

First the old tool observations are shortened, then the old turns are folded into one
summary message (and, if still needed, the newest observation is shortened too). The task
itself is never touched.
"""

from __future__ import annotations

from collections.abc import Callable

from agent import prompts
from agent.events import ContextTrimmed
from backends import Message

SHORT_OBSERVATION = 240


class ContextOverflow(RuntimeError):
    pass


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" ... [{len(text) - limit} characters cut]"


def fit(messages: list[Message], count: Callable[[list[Message]], int], limit: int,
        keep_head: int = 2) -> tuple[list[Message], list[ContextTrimmed]]:
    """`messages` trimmed until `count(messages) <= limit`; the events say what was done.

    keep_head: how many leading messages (system prompt, task) are never changed.
    """
    before = count(messages)
    if before <= limit:
        return messages, []
    trims: list[ContextTrimmed] = []
    head, body = messages[:keep_head], messages[keep_head:]
    last_observation = max((i for i, m in enumerate(body) if m.role == "user"), default=-1)
    shortened = [
        m.model_copy(update={"content": shorten(m.content or "", SHORT_OBSERVATION)})
        if m.role == "user" and i != last_observation else m
        for i, m in enumerate(body)
    ]
    messages = head + shortened
    after = count(messages)
    if after < before:
        trims.append(ContextTrimmed(action="shortened_observations", tokens_before=before, tokens_after=after))
    if after <= limit:
        return messages, trims
    # Fold everything but the newest exchange into a summary.
    old, recent = shortened[:-2], shortened[-2:]
    lines = [f"- {m.role}: {shorten(' '.join((m.content or '').split()), 100)}" for m in old]
    summary = Message(role="user", content=prompts.SUMMARY.format(lines="\n".join(lines[-12:])))
    messages = head + [summary] + recent
    final = count(messages)
    if final > limit and messages[-1].role == "user":  # last resort: the newest observation too
        messages[-1] = messages[-1].model_copy(update={"content": shorten(messages[-1].content or "", SHORT_OBSERVATION)})
        final = count(messages)
    trims.append(ContextTrimmed(action="summarized_turns", tokens_before=after, tokens_after=final))
    if final > limit:
        raise ContextOverflow(f"the task and its newest turn need {final} tokens; the budget is {limit}")
    return messages, trims
