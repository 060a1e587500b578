"""A deterministic backend for tests: it streams scripted replies token by token.

Users test their own agents with it too, so it behaves like a real backend where that
matters: stop strings, max_tokens, finish reasons, usage, logprobs with alternatives.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from backends.base import BackendError, collect, say_no_attention
from backends.stops import StopMatcher
from backends.types import Generation, GenerationRequest, Message, TokenEvent, ToolCall

Reply = str | list[ToolCall] | Message | Callable[[GenerationRequest], str]  # a Message: its words, then its calls

_PIECE = re.compile(r"\s*[\w]+|\s*[^\w\s]|\s+", re.UNICODE)


class ScriptedExhausted(BackendError):
    pass


class ScriptedTokenizer:
    """Splits text into words and punctuation, each with leading whitespace; ids grow as pieces appear."""

    eos_token = "<|end|>"
    eos_token_id = 0

    def __init__(self) -> None:
        self._ids: dict[str, int] = {self.eos_token: 0}
        self._pieces: list[str] = [self.eos_token]

    def split(self, text: str) -> list[str]:
        return _PIECE.findall(text)

    def encode(self, text: str) -> list[int]:
        return [self.piece_id(piece) for piece in self.split(text)]

    def decode(self, ids: Sequence[int]) -> str:
        try:
            return "".join("" if i == self.eos_token_id else self._pieces[i] for i in ids)
        except IndexError:
            raise ValueError(f"token id out of range for this scripted tokenizer (size {len(self._pieces)})") from None

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    def piece_id(self, piece: str) -> int:
        if piece not in self._ids:
            self._ids[piece] = len(self._pieces)
            self._pieces.append(piece)
        return self._ids[piece]


def _echo(request: GenerationRequest) -> str:
    last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    return f"You said: {last_user}"


def _made_up_logprobs(piece: str, position: int, count: int) -> tuple[float, list[tuple[str, float]]]:
    """A well-formed, deterministic distribution: the chosen piece is the most likely."""
    digest = hashlib.sha256(f"{position}:{piece}".encode()).digest()
    chosen_p = 0.5 + 0.45 * digest[0] / 255
    alternatives = [piece.upper() if piece.upper() != piece else piece + "s", piece.strip() + ".", " the", " a", ","]
    alternatives += [f" alt{i}" for i in range(count)]
    top = [(piece, math.log(chosen_p))]
    remaining = 1.0 - chosen_p
    for alt in alternatives:
        if len(top) >= count:
            break
        if alt in (t for t, _ in top):
            continue
        remaining *= 0.5
        top.append((alt, math.log(remaining)))
    return math.log(chosen_p), top[:count]


class ScriptedBackend:
    """Replies come from `replies` in order (strings, lists of ToolCalls, or functions of the request),
    then `reply_fn`.

    With neither, it echoes the last user message. When the list runs out and there is no
    `reply_fn`, a request fails with ScriptedExhausted, so a test sees an unexpected extra call.
    """

    name = "scripted"
    model_name = "scripted"
    supports_constraints = native_tool_calls = False
    supports_tool_calls = supports_logprobs = True
    supports_attention = False

    def __init__(
        self,
        replies: Sequence[Reply] | None = None,
        reply_fn: Callable[[GenerationRequest], str] | None = None,
        context_window: int = 8192,
    ) -> None:
        self._replies = list(replies or [])
        self._reply_fn = reply_fn if (reply_fn or replies) else _echo
        self.tokenizer = ScriptedTokenizer()
        self.context_window = context_window
        self.requests: list[GenerationRequest] = []  # every request seen, for assertions

    def render(self, messages: Sequence[Message], tools: list[dict[str, Any]] | None = None) -> str:
        parts = [f"<|{m.role}|>\n{m.content or ''}{self._render_calls(m)}<|end|>\n" for m in messages]
        if tools:
            names = ", ".join(t.get("function", {}).get("name", "?") for t in tools)
            parts.insert(0, f"<|tools|>\n{names}<|end|>\n")
        return "".join(parts) + "<|assistant|>\n"

    @staticmethod
    def _render_calls(message: Message) -> str:
        return "".join(f"\n<call {c.name} {c.arguments}>" for c in message.tool_calls or [])

    def _next_reply(self, request: GenerationRequest) -> str | list[ToolCall] | Message:
        if self._replies:
            reply = self._replies.pop(0)
            return reply(request) if callable(reply) else reply
        if self._reply_fn is None:
            raise ScriptedExhausted(
                f"the scripted backend has no reply left for request #{len(self.requests)}; "
                "give more replies or a reply_fn"
            )
        return self._reply_fn(request)

    def _start(self, request: GenerationRequest) -> tuple[int, Iterator[TokenEvent]]:
        """(prompt tokens, events); checks the window and takes the reply before any event."""
        self.requests.append(request)
        say_no_attention(self, request)
        prompt_tokens = len(self.tokenizer.encode(self.render(request.messages, request.tools)))
        if prompt_tokens >= self.context_window:
            raise BackendError(f"prompt is {prompt_tokens} tokens; the context window is {self.context_window}")
        return prompt_tokens, self._events(self._next_reply(request), request)

    def stream(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        return self._start(request)[1]

    def _events(self, reply: str | list[ToolCall] | Message, request: GenerationRequest) -> Iterator[TokenEvent]:
        if isinstance(reply, Message):  # what the model says before its calls, then the calls
            for piece in self.tokenizer.split(reply.content or ""):
                yield TokenEvent(text=piece, token_id=self.tokenizer.piece_id(piece), token=piece, logprob=0.0)
            reply = list(reply.tool_calls or [])
        if isinstance(reply, list):  # a reply of tool calls, as a backend that parses them returns it
            yield TokenEvent(text="", token_id=0, token=self.tokenizer.eos_token, logprob=0.0,
                             finish_reason="tool_calls", tool_calls=reply)
            return
        params = request.sampling
        stops = StopMatcher(params.stop)
        pieces = self.tokenizer.split(reply) + [self.tokenizer.eos_token]
        for position, piece in enumerate(pieces):
            is_eos = piece == self.tokenizer.eos_token
            logprob, top = _made_up_logprobs(piece, position, max(params.logprobs, 1))
            text, stopped = ("", False) if is_eos else stops.push(piece)
            finish = "eos" if is_eos else "stop" if stopped else None
            if finish is None and position + 1 >= params.max_tokens:
                finish = "length"
            if finish in ("eos", "length"):
                text += stops.flush()
            yield TokenEvent(
                text=text,
                token_id=self.tokenizer.piece_id(piece),
                token=piece,
                logprob=logprob,
                top_logprobs=top if params.logprobs else [],
                finish_reason=finish,
            )
            if finish:
                return

    def generate(self, request: GenerationRequest) -> Generation:
        prompt_tokens, events = self._start(request)
        return collect(events, prompt_tokens)
