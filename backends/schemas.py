"""JSON Schemas as a model may fill them: the one home of the walkers that close objects and
bound strings, used for tool parameters (the agent's JSON act schema, the local engine's
tool-call grammars) and for typed answers."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def closed(schema: Any) -> Any:
    """A copy in which every object with declared properties admits no others."""
    if isinstance(schema, dict):
        schema = {k: closed(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
    elif isinstance(schema, list):
        schema = [closed(v) for v in schema]
    return schema


def bounded(schema: Any, max_length: int) -> Any:
    """A copy in which every free string (no maxLength, enum or const) gets maxLength."""
    if isinstance(schema, dict):
        out = {k: bounded(v, max_length) for k, v in schema.items()}
        if out.get("type") == "string" and not {"maxLength", "enum", "const"} & set(out):
            out["maxLength"] = max_length
        return out
    if isinstance(schema, list):
        return [bounded(v, max_length) for v in schema]
    return schema


def call_parameters(tool: dict[str, Any], max_string: int | None = None) -> dict[str, Any]:
    """An OpenAI-style tool's parameters, closed, and with free strings bounded when `max_string` is given.

    The agent bounds them so a constrained reply always fits its token budget; a server does
    not, since a caller's tool may take long text (a file's contents)."""
    parameters = closed(tool.get("function", {}).get("parameters") or EMPTY_PARAMETERS)
    return bounded(parameters, max_string) if max_string is not None else parameters


def explain_validation(error: ValidationError, subject: str = "argument", limit: int = 8) -> str:
    """pydantic's errors, short and readable by a person or a model: one clause per problem.

    subject names what was given: "argument" (a tool call), "option" (the CLI), "field" (HTTP)."""
    clauses = []
    for item in error.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"])
        if item["type"] == "missing":
            clauses.append(f"{subject} '{where}' is required")
        elif item["type"] == "extra_forbidden":
            clauses.append(f"unexpected {subject} '{where}'")
        else:
            message = item["msg"].removeprefix("Value error, ")
            given = json.dumps(item.get("input"), default=str)[:80]
            clauses.append(f"{subject} '{where}': {message} (got {given})" if where else f"{message} (got {given})")
    more = len(error.errors()) - limit
    return "; ".join(clauses) + (f"; and {more} more" if more > 0 else "")
