"""Every prompt the agent sends, in one place."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.offers import Observation

SYSTEM = "You are a careful assistant that solves tasks step by step and uses tools when they help."

PLAN = """Task: {task}
{memory}
Tools: {tools}
Reply with JSON. To answer at once, without tools: {{"answer": ...}}.
If the task needs tools or several steps: {{"steps": [...]}}, a short plan of at most {max_steps} steps."""

PLAN_AFTER_DIRECT = """Task: {task}
{memory}
Your answer "{answer}" was checked and it failed:
{reasons}
Write a short plan that uses the tools, at most {max_steps} steps, as JSON with the key "steps"."""

REPLAN = """Your answer "{answer}" was checked and it failed:
{reasons}
What the tools found so far:
{evidence}
Write a new short plan for the remaining work, different from the plan above, as JSON with the key "steps"."""

ACT = """Tools you can call:
{tools}
{memory}
Plan:
{plan}

Task: {task}
Reply with JSON. To use tools: {{"tool_calls": [{{"name": ..., "arguments": {{...}}}}]}}.
When you know the answer: {{"answer": ...}}."""

ACT_NATIVE = """{memory}
Plan:
{plan}

Task: {task}
Call the tools you need. When you know the answer, reply with it in plain words."""

REFUSED = """That is not the answer yet:
{reasons}"""

REPLANNED = """Your answer was checked and it failed:
{reasons}
New plan:
{plan}"""

OBSERVATION = """Tool results:
{results}
If these results answer the task, reply with {{"answer": ...}} now. Otherwise call another tool."""

NUMBERS_LEFT = "\nThe task's numbers not used yet: {numbers}."

ANSWER_NOW = """Task: {task}
What the tools found:
{results}
Write the final answer, using the numbers and facts the tools found."""

NO_TOOL_WORKED = """Task: {task}
Every tool call failed:
{results}
The tools cannot answer this. Answer the task yourself, from what you know."""

RESTATED = """{task}

Found so far with the tools:
{results}
Call the next tool the task needs, or answer if these results are enough."""

REPEATED_CALL = "you already made this call; its result was: {result}"
LOOPING_CALL = "this call repeats {unit!r} {times} times in a row, which computes or finds nothing: write the call the task needs"

CUT_OFF = "The reply was cut off at {limit} characters before it gave the answer; give the answer in one short sentence"
PARSE_ERROR = "Your reply was not valid: {error}. Reply with JSON only, in the format asked."

VERIFY = """Task: {task}
Proposed answer: {answer}
Evidence from tools:
{evidence}
Does the answer solve the task and agree with the evidence? Reply with JSON with the keys "passed" (true or false) and "reasons" (short sentences)."""

MEMORY_HITS = "Relevant notes from memory (cite them by [id]):\n{hits}"

SUMMARY = "Earlier in this task (summarized to save space):\n{lines}"


def tool_lines(schemas: list[dict[str, Any]]) -> str:
    lines = []
    for schema in schemas:
        fn = schema["function"]
        params = fn.get("parameters", {}).get("properties", {})
        args = ", ".join(f"{name}: {_type_text(spec)}" for name, spec in params.items())
        lines.append(f"- {fn['name']}({args}): {fn.get('description', '').splitlines()[0] if fn.get('description') else ''}")
    return "\n".join(lines) or "(none)"


def _type_text(spec: dict[str, Any]) -> str:
    choices = spec.get("enum") or []
    if 0 < len(choices) <= 8:
        return " | ".join(json.dumps(c, ensure_ascii=False) for c in choices)
    return str(spec.get("type", "any"))


def bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def numbered(steps: list[str]) -> str:
    return "\n".join(f"{i}. {step}" for i, step in enumerate(steps, start=1)) or "(no plan)"


def memory_block(hits: list[dict[str, Any]]) -> str:
    if not hits:
        return ""
    return MEMORY_HITS.format(hits="\n".join(f"[{h['chunk_id']}] ({h['source']}) {h['text']}" for h in hits))


def results_block(results: list[tuple[str, dict[str, Any], str]]) -> str:
    return "\n".join(f"- {name}({json.dumps(args, ensure_ascii=False)}) -> {text}" for name, args, text in results)


def answer_now(task: str, evidence: Sequence[Observation]) -> str:
    """Asks for the answer with what the tools found (the last four calls that worked, with their arguments)."""
    return ANSWER_NOW.format(results=_found(evidence), task=task)


def no_tool_worked(task: str, evidence: Sequence[Observation]) -> str:
    """Asks for the answer from what the model knows, the failed calls listed (the last four)."""
    return NO_TOOL_WORKED.format(results=_found(evidence), task=task)


def restated(task: str, evidence: Sequence[Observation]) -> str:
    """The task again, with what the tools found: the next call, or the answer."""
    return RESTATED.format(results=_found(evidence), task=task)


def _found(evidence: Sequence[Observation]) -> str:
    found = [o for o in evidence if o.ok] or list(evidence)
    return "\n".join(f"- {o.line}" for o in found[-4:])
