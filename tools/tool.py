"""`@tool` and `Tool`: a Python function described for a model, with its arguments validated.

The description and each parameter's description come from the docstring (Google, NumPy or
reST style); the arguments model is built with pydantic from the type hints.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints, overload

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, create_model


class ToolDefinitionError(TypeError):
    """A function cannot become a tool (a bad signature); raised to the developer, never the model."""


class ArgumentsError(ValueError):
    """Arguments that do not fit a raw-schema tool; the message is written for the model."""


@dataclass(frozen=True)
class SeenNumbers:
    """The numbers a grounded argument may compute with (Tool's `grounded`), as a model writes them.

    `each_once`: the calculation is one chain of exactly these numbers, each used at most as often
    as listed, joined by `operators`: the task's own numbers and what the evidence says about its
    subject for a first step, or a last result and the numbers not used yet for the next one.
    """

    numbers: tuple[str, ...]
    each_once: bool = False
    operators: tuple[str, ...] = ("+", "-", "*", "/", "%", "**")


class Tool:
    """A callable the model may invoke. Arguments arrive as JSON text and are validated first."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        requires_approval: bool = False,
        timeout: float | None = 30.0,
        parameters: dict[str, Any] | None = None,
        choices: Callable[[], dict[str, list[str] | None]] | None = None,
        grounded: dict[str, Callable[[SeenNumbers], str]] | None = None,
    ) -> None:
        """`parameters` (a JSON Schema) replaces the signature for tools that take one dict (MCP).

        `choices` names, for some string arguments, every value they can take right now (or None
        when there are too many to list); each schema then offers them as an enum, so a grammar
        lets the model pick only among them.

        `grounded` names string arguments whose numbers must be ones the run has seen, each with a
        function from those numbers (SeenNumbers) to the argument's pattern; `parameters_schema(seen)`
        applies them. The calculator's expression is one: arithmetic on numbers nobody gave is a
        guess, not a computation.
        """
        self.fn = fn
        self.name = name or fn.__name__
        if not self.name.replace("_", "").replace("-", "").isalnum():
            raise ToolDefinitionError(f"tool name {self.name!r} must be letters, digits, '_' or '-'")
        doc = docstring_parser.parse(inspect.getdoc(fn) or "")
        summary = "\n\n".join(p for p in (doc.short_description, doc.long_description) if p)
        self.description = description if description is not None else summary
        self.requires_approval = requires_approval
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        self._raw_schema = parameters
        self._choices = choices
        self.grounded = dict(grounded or {})
        self.arguments_model: type[BaseModel] | None = None
        if parameters is None:
            params = {p.arg_name: p.description for p in doc.params if p.description}
            self.arguments_model = _arguments_model(fn, self.name, params)

    def parameters_schema(self, seen: SeenNumbers | None = None) -> dict[str, Any]:
        """The JSON Schema of the arguments; with `seen`, grounded arguments may only use those numbers."""
        if self._raw_schema is not None:
            return self._raw_schema
        assert self.arguments_model is not None
        schema = self.arguments_model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        for name, values in (self._choices() if self._choices else {}).items():
            prop = schema.get("properties", {}).get(name)
            if values and prop is not None and prop.get("type") == "string":
                prop["enum"] = list(values)
        for name, pattern_for in self.grounded.items() if seen is not None and seen.numbers else ():
            prop = schema.get("properties", {}).get(name)
            if prop is not None and prop.get("type") == "string":
                prop["pattern"] = pattern_for(seen)
        return schema

    def schema(self, seen: SeenNumbers | None = None) -> dict[str, Any]:
        """The OpenAI function-calling format."""
        parameters = self.parameters_schema(seen)
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": parameters}}

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Arguments checked and converted to the types the function takes.

        Raises pydantic's ValidationError, or ArgumentsError for tools described by a raw schema
        (only required and unexpected names are checked here; the tool checks the rest).
        """
        if self.arguments_model is None:
            schema = self._raw_schema or {}
            missing = [name for name in schema.get("required", []) if name not in arguments]
            known = schema.get("properties")
            extra = [name for name in arguments if known is not None and name not in known]
            problems = [f"argument '{m}' is required" for m in missing] + [f"unexpected argument '{e}'" for e in extra]
            if problems:
                raise ArgumentsError("invalid arguments: " + "; ".join(problems))
            return arguments
        model = self.arguments_model.model_validate(arguments)
        return {name: getattr(model, name) for name in type(model).model_fields}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def _arguments_model(fn: Callable[..., Any], tool_name: str, descriptions: dict[str, str]) -> type[BaseModel]:
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise ToolDefinitionError(f"tool {tool_name!r}: cannot resolve its type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool {tool_name!r}: *args and **kwargs cannot be described to a model")
        if param.name not in hints:
            raise ToolDefinitionError(f"tool {tool_name!r}: parameter {param.name!r} needs a type hint")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], Field(default, description=descriptions.get(param.name)))
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    try:
        return create_model(f"{tool_name}_arguments", __config__=config, **fields)
    except Exception as exc:
        raise ToolDefinitionError(f"tool {tool_name!r}: pydantic cannot model its parameters: {exc}") from exc


@overload
def tool(fn: Callable[..., Any]) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, requires_approval: bool = False, timeout: float | None = 30.0
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    requires_approval: bool = False,
    timeout: float | None = 30.0,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turns a typed, documented function into a Tool: `@tool` or `@tool(name=..., ...)`."""

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(f, name=name, requires_approval=requires_approval, timeout=timeout)

    return wrap(fn) if fn is not None else wrap


def to_text(value: Any) -> str:
    """A tool's return value as the text the model reads."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
