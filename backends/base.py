"""The Backend protocol and the registry that finds backends by name."""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from backends.types import Generation, GenerationRequest, Message, TokenEvent, Usage

ENTRY_POINT_GROUP = "tokentrail.backends"

# Built-ins are named by import path so that `import backends` stays light (no torch).
BUILTIN_BACKENDS: dict[str, str] = {
    "local": "backends.local.backend:LocalBackend",
    "openai": "backends.openai:OpenAIBackend",
    "scripted": "backends.scripted:ScriptedBackend",
}


class BackendError(RuntimeError):
    """A backend could not be loaded or could not serve a request."""


class GenerationError(BackendError):
    """Generation stopped part way (a grammar and the engine disagreed, a kernel failed): the
    request was valid, so servers answer with this error in the reply, never a crash."""


class UnknownBackendError(BackendError, ValueError):
    pass


@runtime_checkable
class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...


@runtime_checkable
class Backend(Protocol):
    """What every backend offers, capabilities declared rather than probed.

    name: the registry name ("local"); model_name: the model it serves; context_window: in tokens.
    supports_constraints: honours GenerationRequest.constraint (JSON Schema, regex, grammar).
    supports_tool_calls: a request's tool_choice yields parsed ToolCalls on the last event.
    supports_logprobs: TokenEvents carry logprob and top_logprobs.
    supports_attention (optional, False when absent): TokenEvents carry where each token attended
    when SamplingParams.attention asks.
    native_tool_calls: the model writes tool calls in a format of its own (its chat template's),
    so an agent should act through tool calls rather than a JSON schema of its own.
    """

    name: str
    model_name: str
    tokenizer: Tokenizer
    context_window: int
    supports_constraints: bool
    supports_tool_calls: bool
    supports_logprobs: bool
    native_tool_calls: bool

    def render(self, messages: Sequence[Message], tools: list[dict[str, Any]] | None = None) -> str: ...
    def stream(self, request: GenerationRequest) -> Iterator[TokenEvent]: ...
    def generate(self, request: GenerationRequest) -> Generation: ...


def say_no_attention(backend: Any, request: GenerationRequest) -> None:
    """Attention weights asked of a backend that cannot give them: said once per backend, then ignored."""
    if request.sampling.attention and not getattr(backend, "_said_no_attention", False):
        backend._said_no_attention = True
        warnings.warn(f"the {backend.name} backend cannot say where tokens attended; SamplingParams.attention "
                      "is ignored (the local backend gives it)", RuntimeWarning, stacklevel=3)


def collect(events: Iterator[TokenEvent], prompt_tokens: int) -> Generation:
    """Drains a token stream into a Generation; what every backend's generate() does."""
    seen = list(events)
    if not seen or seen[-1].finish_reason is None:
        raise BackendError("the token stream ended without a finish reason")
    return Generation(
        text="".join(ev.text for ev in seen),
        token_ids=[ev.token_id for ev in seen],
        finish_reason=seen[-1].finish_reason,
        usage=Usage.of(seen, prompt_tokens),
        events=seen,
        tool_calls=seen[-1].tool_calls,
    )


def _third_party() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> list[str]:
    return sorted(set(BUILTIN_BACKENDS) | set(_third_party()))


def _resolve(name: str) -> Callable[..., Backend]:
    if name in BUILTIN_BACKENDS:
        module, _, attr = BUILTIN_BACKENDS[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    plugin = _third_party().get(name)
    if plugin is None:
        raise UnknownBackendError(
            f"unknown backend {name!r}; known backends: {', '.join(available_backends())}. "
            f"Third-party backends register under the entry point group {ENTRY_POINT_GROUP!r}."
        )
    try:
        return plugin.load()
    except Exception as exc:  # a broken plugin must not look like a missing one
        raise BackendError(f"backend {name!r} from {plugin.value!r} failed to import: {exc}") from exc


def load_backend(name: str, **options: Any) -> Backend:
    """Builds the backend registered as `name`, passing `options` to its constructor."""
    factory = _resolve(name)
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:  # only the call's shape: errors inside the constructor stay what they are
        raise BackendError(f"backend {name!r} rejected its options {sorted(options)}: {exc}") from exc
    except ValueError:
        pass  # no introspectable signature
    backend = factory(**options)
    if not isinstance(backend, Backend):
        raise BackendError(f"backend {name!r} built a {type(backend).__name__}, which lacks the Backend methods")
    return backend
