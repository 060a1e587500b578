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
    """A copy in which every free string (no enum or const) has a maxLength of at most `max_length`."""
    if isinstance(schema, dict):
        out = {k: bounded(v, max_length) for k, v in schema.items()}
        if out.get("type") == "string" and not {"enum", "const"} & set(out):
            out["maxLength"] = min(out.get("maxLength", max_length), max_length)
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


_REGEX_SPECIAL = frozenset("\\.^$|?*+()[]{}-/")
_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _literal(char: str) -> str:
    return "\\" + char if char in _REGEX_SPECIAL else _CONTROL.get(char, char)


def not_any_of(texts: list[str], compared: int = 60) -> str:
    """A regular expression (anchored) for every string except those in `texts`.

    Constrained decoders have no look-ahead, so the complement is spelled out over a trie of
    the texts: at each point, end early, take a character no text continues with, or follow one.
    Only the first `compared` characters count (each nests a group, and regex engines limit the
    nesting): a string that starts with a long text's first `compared` characters is refused too.
    """
    trie: dict[str, Any] = {}
    for text in texts:
        node = trie
        for char in text[:compared]:
            node = node.setdefault(char, {})
        node["" if len(text) <= compared else "..."] = {}  # a text ends here, or is cut here

    def rest(node: dict[str, Any]) -> str:
        chars = sorted(c for c in node if len(c) == 1)
        options = [] if "" in node else [""]
        options.append(f"[^{''.join(_literal(c) for c in chars)}][\\s\\S]*" if chars else "[\\s\\S]+")
        options += [_literal(c) + rest(node[c]) for c in chars if "..." not in node[c]]
        return "(?:" + "|".join(options) + ")"

    return "^" + rest(trie) + "$"


def _ranges_without(values: list[float]) -> list[dict[str, Any]]:
    cuts = sorted(set(values))
    ranges = [{"exclusiveMaximum": cuts[0]}]
    ranges += [{"exclusiveMinimum": low, "exclusiveMaximum": high} for low, high in zip(cuts, cuts[1:])]
    return ranges + [{"exclusiveMinimum": cuts[-1]}]


def excluding(schema: dict[str, Any], values: list[Any]) -> dict[str, Any] | None:
    """`schema` narrowed to refuse each of `values`, or None when JSON Schema cannot say so here."""
    kind = schema.get("type")
    if "enum" in schema or "const" in schema:
        left = [v for v in schema.get("enum", [schema.get("const")]) if v not in values]
        return {**{k: v for k, v in schema.items() if k not in ("enum", "const")}, "enum": left} if left else None
    if kind == "string" and all(isinstance(v, str) for v in values):
        return {"allOf": [schema, {"type": "string", "pattern": not_any_of(values)}]}
    if kind in ("number", "integer") and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return {"allOf": [schema, {"anyOf": [{"type": kind, **r} for r in _ranges_without(values)]}]}
    if kind == "boolean" and all(isinstance(v, bool) for v in values):
        left = [b for b in (True, False) if b not in values]
        return {"type": "boolean", "enum": left} if left else None
    return None


def other_than(parameters: dict[str, Any], previous: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Tool parameters that no earlier call's arguments satisfy, or None when every call is used up.

    A call differs from all `previous` ones when one of its arguments takes a value none of them
    gave it, or it gives an argument they all left out: one choice per argument (a stronger
    condition than differing from each call, but one JSON Schema can state).
    """
    if not previous:
        return parameters
    properties, required = parameters.get("properties", {}), list(parameters.get("required", []))
    options = []
    for name, schema in properties.items():
        given = [args[name] for args in previous if name in args]
        if not given:  # every earlier call left it out: giving it makes the call new
            options.append({**parameters, "required": sorted({*required, name})})
        elif len(given) == len(previous) and (narrowed := excluding(schema, given)) is not None:
            options.append({**parameters, "properties": {**properties, name: narrowed}})
    return None if not options else options[0] if len(options) == 1 else {"anyOf": options}
