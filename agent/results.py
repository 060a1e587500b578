"""Reading tool results and answers for the checks (agent/checks.py): the numbers, words and JSON values a
text states, the names a task quotes, and which earlier results an answer left out."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from agent.offers import Observation, parse_arguments

NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")

# A name the task quotes, in the quotation marks of any script ("it's" opens no quote).
QUOTED = re.compile(r"""(?<!\w)'([^']{2,}?)'(?!\w)|"([^"]{2,}?)"|‘([^’]{2,}?)’|“([^”]{2,}?)”|«([^»]{2,}?)»"""
                     r"|„([^“]{2,}?)“|「([^」]+?)」|『([^』]+?)』")


def quoted(text: str) -> list[str]:
    return [next(g for g in match if g).strip() for match in QUOTED.findall(text)]


def argument_text(arguments: str) -> str:
    """A call's argument values as text (JSON escapes undone: "Valpara\u00edso" is "Valparaíso")."""
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False)
    except json.JSONDecodeError:
        return arguments


def names_no_call_took(task: str, observations: Sequence[Observation]) -> list[str]:
    """The names the task quotes that went into none of these calls' arguments (case aside)."""
    arguments = " ".join(argument_text(o.arguments) for o in observations).casefold()
    return [name for name in quoted(task) if name.casefold() not in arguments]


def same_tool_before(observations: Sequence[Observation], task: str) -> list[Observation]:
    """Earlier results of the last call's tool that were asked for something of the task the last call was
    not: one of two books the task names. An answer that states the last one's value alone left the other
    out ("412 more pages", The Copper Orchard's pages, after find_book on both; Qwen2.5-Coder-0.5B). A call
    the last one took over (add(2, 2), then add(2, 3) for 2 + 3) or fed (42 from "17 + 25", then
    "42 * 3") left nothing out."""
    ok = [o for o in observations if o.ok]
    last = task_values(ok[-1].arguments, task)
    return [o for i, o in enumerate(ok[:-1]) if o.name == ok[-1].name and task_values(o.arguments, task) - last
            and not numbers(o.shown) & {v for later in ok[i + 1:] for v in numbers(later.arguments)}]


def task_values(arguments: str, task: str) -> set[str]:
    """A call's argument values that the task states (casefolded)."""
    said = task.casefold()
    return {str(v).casefold() for v in parse_arguments(arguments).values()
            if isinstance(v, str | int | float) and str(v).casefold() in said}


def values(result: str) -> set[str]:
    return number_texts(result) | json_words(result)


def worked_out(answer: str, sources: Sequence[str]) -> bool:
    """Whether the answer has a number that no source has, even rounded (signs aside: "2026-10-17")."""
    known = {n.lstrip("-") for text in sources for n in number_texts(text)}
    return any(n not in known and not any(same_number(k, {n}) for k in known)
               for n in {n.lstrip("-") for n in number_texts(answer)})


def number_texts(text: str) -> set[str]:
    return {n.replace(",", "") for n in NUMBER.findall(text)}


def stated(text: str) -> set[str]:
    return number_texts(text) | words(text)


def numbers(text: str) -> set[float]:
    return {float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)}


def words(text: str) -> set[str]:
    return {w.casefold() for w in re.findall(r"\w{3,}", text)}


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def json_words(text: str) -> set[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return set()
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += item.values()
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str):
            found |= words(item)
    return found


def same_number(value: str, said: set[str]) -> bool:
    """1154.3 stated for a result of 1154.324, 86 for 86.0: rounding is no new number."""
    try:
        target = float(value)
    except ValueError:
        return False
    for text in said:
        try:
            number = float(text)
        except ValueError:
            continue
        decimals = len(text.partition(".")[2])
        if number != 0 and abs(number - target) <= 0.5 * 10 ** -decimals + 1e-9:
            return True
    return False
