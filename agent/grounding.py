"""Deterministic checks that an answer is grounded in the task and in what the tools found.

They run before any model verdict, because a small model's verdict passes what it is shown
(measured: 17 of 17 wrong answers passed on benchmarks/agent_eval.py). Each check is general,
not tuned to a benchmark, and says which failure it prevents. A failed check's reason goes
back to the model, as any verifier's does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from agent.arithmetic import DATE
from agent.operations import operations_done, operations_left, out_of_order, swapped_operands

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
# Questions that ask for an amount: "how many", "total", an arithmetic expression, a named operation.
_OPERATION = (r"\b(total|sum|average|percent(age)?|square root|add|subtract|multipl(y|ied)|divided?|product|difference)\b"
              r"|\d\s*(\*\*|[-+*/%^x])\s*\(?\d")
_COMPUTATION = re.compile(_OPERATION, re.IGNORECASE)
_QUANTITY = re.compile(r"\bhow (many|much)\b|\b(count|number of)\b|" + _OPERATION, re.IGNORECASE)
_STOP = frozenset("""the and for with that this what which who whom whose when where why how are was were
is be been being has have had does did do not use using from into onto than then there their them they
its it's our your you his her him she he we can could would should will shall may might must each every
all any some one two three about after before also just only very more most much many few file files
tool tools calculator answer question task please tell give find read list show number numbers""".split())


def asks(pattern: re.Pattern[str], task: str) -> bool:
    """Whether the task, its dates aside, asks for a quantity or a computation: the hyphens of 2027-03-15 are no
    subtraction ("What day of the week is 2027-03-15?" asks for no number; "Monday" was refused)."""
    return pattern.search(DATE.sub(" ", task)) is not None


# Numbers a task may give in words ("two crates", "15 percent", "double it"): known, as its digits are.
_NUMBER_WORDS = {
    **{w: float(i) for i, w in enumerate("""zero one two three four five six seven eight nine ten eleven twelve thirteen
        fourteen fifteen sixteen seventeen eighteen nineteen twenty""".split())},
    **{w: float(10 * i) for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), start=3)},
    "hundred": 100.0, "thousand": 1000.0, "million": 1e6, "dozen": 12.0, "half": 2.0, "twice": 2.0, "double": 2.0,
    "triple": 3.0, "thrice": 3.0, "percent": 100.0, "percentage": 100.0, "%": 100.0,
}
_NUMBER_WORD = re.compile(r"%|\b(" + "|".join(w for w in _NUMBER_WORDS if w != "%") + r")\b", re.IGNORECASE)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _stems(terms: set[str]) -> set[str]:
    return {t.rstrip("s") for t in terms}


def numbers(text: str) -> set[float]:
    return set(_number_list(text))


def _number_list(text: str) -> list[float]:
    """The numbers of a text in order, repeats kept."""
    out = []
    for match in _NUMBER.findall(text):
        try:
            out.append(float(match.replace(",", "")))
        except ValueError:
            continue
    return out


def key_terms(text: str) -> set[str]:
    words = (w.lower().strip("'-") for w in _WORD.findall(text))  # 'tidepool' in quotes is tidepool
    return {w for w in words if len(w) > 2 and w not in _STOP}


def close_to_any(value: float, known: set[float]) -> bool:
    return any(abs(value - k) <= 1e-6 * max(1.0, abs(k)) for k in known)


def grounded_numbers(task: str, calls: Sequence[tuple[str, str]], notes: Sequence[str] = ()) -> set[float]:
    """The numbers the task, the notes and the tools' results vouch for. A result counts only when
    the call's own arguments used known numbers: calculator("123456789") invents, it does not compute."""
    known = numbers(task) | {_NUMBER_WORDS[m.group(0).lower()] for m in _NUMBER_WORD.finditer(task)}
    known |= {n for note in notes for n in numbers(note)}
    for arguments, output in calls:
        if all(close_to_any(n, known) for n in numbers(arguments)):
            known |= numbers(output)
    return known


def number_texts(values: Iterable[float], distinct: bool = True) -> list[str]:
    """Numbers as a model would write them in an expression: 42000, 3.5, never 42000.0 or a sign."""
    texts = [str(int(abs(n))) if n.is_integer() and abs(n) < 1e15 else repr(abs(n)) for n in values]
    return sorted(set(texts)) if distinct else texts


def unused_task_numbers(task: str, calls: Sequence[tuple[str, str]]) -> list[float]:
    """The task's numbers that no call's arguments used (yet)."""
    used = {n for arguments, _ in calls for n in numbers(arguments)}
    return sorted(n for n in numbers(task) if not close_to_any(n, used))


def answer_in_hand(task: str, calls: Sequence[tuple[str, str]]) -> bool:
    """Whether the last successful call answered a question that asks for an amount: its result is
    one number, and the calls used every number of the task. Then the next turn may only answer,
    instead of calling on ("37 * 91" gave 3367, then search_files("37 * 91") and list_files).
    A result that leaves a task number unused is a step on the way ("12 * 12", then "- 44")."""
    return _ends_in_a_number(task, calls) and not unused_task_numbers(task, calls)


def unfinished_calculation(task: str, calls: Sequence[tuple[str, str]]) -> bool:
    """Whether a calculation is under way: the last successful call computed one number from numbers,
    and some of the task's numbers are still unused ("300 + 45" gave 345; the 2 of "(300 + 45) * 2" is left)."""
    return _ends_in_a_number(task, calls) and bool(numbers(calls[-1][0])) and bool(unused_task_numbers(task, calls))


def _ends_in_a_number(task: str, calls: Sequence[tuple[str, str]]) -> bool:
    """A question that asks for an amount, and the last successful call gave one number."""
    return bool(calls) and asks(_QUANTITY, task) and _NUMBER.fullmatch(calls[-1][1].strip()) is not None


def tools_asked_for(task: str, tool_schemas: Sequence[dict]) -> list[str]:
    """The tools a task asks to use: it names one ("use the calculator", "list the files" for list_files)
    or a value one of its arguments takes ("Read README.md", a path read_file offers)."""
    words = _stems({w.lower() for w in re.findall(r"[A-Za-z]+", task)})
    lowered = task.lower()
    asked = []
    for schema in tool_schemas:
        fn = schema["function"]
        named = _stems(set(fn["name"].lower().split("_"))) <= words
        values = [v for spec in (fn.get("parameters") or {}).get("properties", {}).values()
                  for v in spec.get("enum", []) if isinstance(v, str) and len(v) > 2 and v != "."]
        if named or any(re.search(rf"(?<![\w.]){re.escape(v.lower())}(?![\w])", lowered) for v in values):
            asked.append(fn["name"])
    return asked


def _shown(values: Sequence[float]) -> str:
    return ", ".join(str(int(n)) if n.is_integer() else str(n) for n in values[:3])


def _computed(calls: Sequence[tuple[str, str]]) -> set[float]:
    """Numbers that calls computed from numbers: not a lookup, and not an echo (calculator("169") -> 169)."""
    out: set[float] = set()
    for arguments, output in calls:
        used, results = numbers(arguments), numbers(output)
        if used and not (len(used) == 1 and results <= used):
            out |= results
    return out


def _sentences(evidence: Sequence[str]) -> list[tuple[str, set[str]]]:
    """The evidence's sentences (lower case), each with the stems of its key terms."""
    found = [s.lower() for e in evidence for line in e.splitlines() for s in _SENTENCE_END.split(line) if s.strip()]
    return [(s, _stems(key_terms(s))) for s in found]


def first_step_numbers(task: str, calls: Sequence[tuple[str, str]], notes: Sequence[str] = ()) -> list[float]:
    """What a task's calculation starts from: its own numbers, as often as it gives them, and those the
    evidence states about the things it names ("floor 7" for "on which floor is the server room? Add 10")."""
    given, asked = _number_list(task), _stems(key_terms(task))
    sentences = _sentences([*(output for _, output in calls), *notes])
    told = {n for s, stems in sentences if stems & asked for n in numbers(s) if not close_to_any(n, set(given))}
    return given + sorted(told)


def _leading_to(found: set[float], calls: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The calls that led to the answer's numbers, oldest first: the last whose result gives one of
    them, and the earlier ones whose results it (or another of them) used."""
    last = next((i for i in range(len(calls) - 1, -1, -1) if any(close_to_any(n, numbers(calls[i][1])) for n in found)), None)
    if last is None:
        return []
    chain, needed = [calls[last]], numbers(calls[last][0])
    for arguments, output in reversed(calls[:last]):
        if any(close_to_any(n, needed) for n in numbers(output)):
            chain.insert(0, (arguments, output))
            needed |= numbers(arguments)
    return chain


def grounding_problems(task: str, answer: str, calls: Sequence[tuple[str, str]], notes: Sequence[str] = ()) -> list[str]:
    """Why `answer` is not grounded in `task`, the successful tool calls ((arguments as JSON, output),
    oldest first) and the recalled `notes`; empty when it is. (An answer that repeats a message is
    checks.NotAMessage's.)"""
    problems = []
    results = [output for _, output in calls]
    evidence = [*results, *notes]
    found = numbers(answer)
    quantity, computation = asks(_QUANTITY, task), asks(_COMPUTATION, task)
    # A question that asks for an amount answered with words only ("math" for "What is 4821 * 367?").
    if quantity and not found:
        problems.append("The task asks for a quantity, but the answer contains no number")
    # A number that nothing produced: neither the task nor a tool nor a note has it (a guessed result).
    known = grounded_numbers(task, calls, notes)
    invented = sorted(n for n in found if not close_to_any(n, known))
    if invented:
        problems.append(f"The number {_shown(invented)} appears in no tool result, note or the task; use what the tools found")
    terms, asked = key_terms(answer), key_terms(task)
    sentences = _sentences(evidence)
    about = [s for s, stems in sentences if stems & _stems(asked)]
    # An answer about something else than the task and what the tools found. Only once the evidence
    # is about the task: a direct answer from what the model knows ("Paris", with unrelated notes
    # recalled) need not repeat the question's words.
    evidence_terms = {t for e in evidence for t in key_terms(e)}
    if about and terms and not found and not terms & (asked | evidence_terms):
        problems.append("The answer shares no key term with the task or the evidence")
    # An answer that only restates the question ("The file is a CSV file" for "Which file is a CSV file?").
    elif evidence and terms and not found and terms <= asked:
        problems.append("The answer only restates the task; answer with what the tools found")
    # A computation answered with one of its own inputs ("169" for the square root of 169, "15% 4").
    asked_numbers, computed = numbers(task), _computed(calls)
    if computation and found and all(close_to_any(n, asked_numbers) for n in found):
        if not any(close_to_any(n, computed) for n in found):
            problems.append(f"The answer only repeats the task's number {_shown(sorted(found))}; compute the result")
    # A computation answered with a value looked up, not computed ("apples,12" for "add the apples and
    # pears"; "42000" for "the budget divided by 12").
    elif computation and found and not any(close_to_any(n, computed) for n in found):
        problems.append("The task asks for a calculation, but no tool computed the answer's number; calculate it")
    # An amount that ignores the latest result ("42" after the calculator went on to 126).
    if results and quantity and found and numbers(results[-1]):
        if not any(close_to_any(n, numbers(results[-1])) for n in found):
            problems.append("The answer does not use the last tool result; answer from what it returned")
    # Where the evidence has sentences about what the task asks, what the answer looked up must
    # come from one of them. A number read off the wrong line ("12" for "How many pears?" from "apples,12 / pears,7").
    looked_up = [n for n in found if not close_to_any(n, asked_numbers | computed)]
    if quantity and looked_up and about:
        if not any(close_to_any(n, numbers(s)) for n in looked_up for s in about):
            problems.append(f"The number {_shown(looked_up)} comes from a line about something else; "
                            "answer from the line about what the task asks")
    # The task's own number given back for an amount the evidence tells ("14" for "how many apples are
    # in 14 crates?", where a note says a crate holds 36): neither looked up nor computed.
    elif quantity and not computation and found and about \
            and not any(close_to_any(n, computed) for n in found):
        if not any(close_to_any(n, numbers(s)) for n in found for s in about):
            problems.append(f"The answer only repeats the task's number {_shown(sorted(found))}; "
                            "use what the tools and notes say about it")
    # A calculation that leaves out what the evidence says about a thing the task names ("12/12/12"
    # for the budget divided by 12, where a note says the budget is 42000; "12*12*12" for the total
    # of apples, pears and plums; "14*14*14" for the apples in 14 crates, where a crate holds 36).
    used = {n for arguments, _ in calls for n in numbers(arguments)}
    if found and used and (computation or any(close_to_any(n, computed) for n in found)):
        left_out = []
        for term in sorted(_stems(asked)):
            told = {n for s, stems in sentences if term in stems for n in numbers(s) if not close_to_any(n, asked_numbers)}
            if told and not any(close_to_any(n, used) for n in told):
                left_out.append(term)
        if left_out:
            problems.append(f"The calculation does not use what the evidence says about {', '.join(left_out)}; use it")
    # Words from a sentence about something else ("The orchard is owned by Tomasz" for "What is the
    # backup password hint?", both in the notes).
    new_terms = _stems(terms) - _stems(asked)
    support = [s for s, stems in sentences if stems & new_terms]
    if not found and about and support and not set(support) & set(about):
        problems.append("The answer comes from a sentence about something else; answer from the one about what the task asks")
    # Words the tools never returned, once they returned sentences about the task ("The owner is a user of
    # the [user_name]" after README.md said "Owner: Tomasz").
    relevant_results = [r for r in results if _stems(key_terms(r)) & _stems(asked)]
    if not found and relevant_results and new_terms and not support:
        problems.append("The answer says nothing that the tools or notes said; answer with what they returned")
    # An operation the task names that the calculation of the answer did not do ("125 / 5" for "Divide
    # 1000 by 8, then add 5"), or did in another order ("17*25", then "425 + 3" for "Add 17 and 25, then
    # multiply the result by 3").
    chain = _leading_to(found, calls) or list(calls)
    skipped = operations_left(task, chain) if operations_done(chain) else {}  # add(a, b) computes out of sight
    if found and calls and skipped:
        problems.append(f"No calculation did what the task names ({', '.join(skipped.values())}); do every step it names")
    elif found and calls and out_of_order(task, chain):
        problems.append("The calculations did the task's operations in another order than it gives them; follow its order")
    elif found and calls and (swapped := swapped_operands(task, chain)):
        problems.append(f"The task's {', '.join(swapped)} must stand right of its operator; swap the numbers")
    # An intermediate result: a computation that left some of the task's numbers out (144 for
    # "Multiply 12 by 12, then subtract 44"; 12 apples for "multiply the plums by 3").
    if computation and found:
        unused = [n for n in unused_task_numbers(task, calls) if not close_to_any(n, found)]
        if unused:
            problems.append(f"The task's number {_shown(unused)} is not used yet: finish the calculation with it")
    return problems
