"""Chat templates from model files, rendered in a sandbox: a template is untrusted input."""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.exceptions import SecurityError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from backends.types import Message

TEMPLATES = Path(__file__).parent / "templates"
MAX_OUTPUT_CHARS = 2_000_000
MAX_REPEAT = 100_000  # "x" * n and [..] * n beyond this are refused

# ChatML, for models that ship no template of their own.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ChatTemplateError(ValueError):
    """The template failed to render, or tried something the sandbox forbids."""


class _TemplateSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_REPEAT:
                    raise SecurityError(f"the template tried to build a sequence of {len(seq) * count} items")
            return operator.mul(left, right)
        if isinstance(right, (int, float)) and abs(right) > 100:
            raise SecurityError("the template tried an exponent above 100")
        return operator.pow(left, right)


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"the chat template refused the conversation: {message}")


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


@lru_cache(maxsize=16)
def family_template(family: str) -> str | None:
    """The chat template a family's models ship, for a file that carries none (Gemma 3 GGUFs often do not)."""
    path = TEMPLATES / f"{family}.jinja"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _compile(source: str) -> Any:
    env = _TemplateSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except TemplateError as exc:
        raise ChatTemplateError(f"the chat template does not parse: {exc}") from exc


def message_dicts(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages as Hugging Face templates expect them: tool call arguments as objects."""
    out = []
    for message in messages:
        item = message.model_dump(exclude_none=True)
        item.setdefault("content", "")
        for call in item.get("tool_calls", []):
            try:
                call["function"]["arguments"] = json.loads(call["function"]["arguments"])
            except json.JSONDecodeError:
                pass  # leave malformed arguments as the text the model wrote
        out.append(item)
    return out


def render_chat(
    template: str,
    messages: Sequence[Message],
    *,
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
) -> str:
    compiled = _compile(template)
    parts: list[str] = []
    size = 0
    try:
        stream = compiled.generate(
            messages=message_dicts(messages),
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
        for piece in stream:
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise ChatTemplateError(f"the chat template produced more than {MAX_OUTPUT_CHARS} characters")
            parts.append(piece)
    except SecurityError as exc:
        raise ChatTemplateError(f"the chat template tried something unsafe and was stopped: {exc}") from exc
    except ChatTemplateError:
        raise
    except (TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        raise ChatTemplateError(f"the chat template failed to render: {type(exc).__name__}: {exc}") from exc
    return "".join(parts)
