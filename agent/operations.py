"""The arithmetic a task asks for and the arithmetic the tools did: which operations, in which order.

The grounding checks use it (every operation the task names is done, in its order) and so does the
act grammar (the next step of a calculation does an operation still left).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence

_WORDS = {"+": r"\b(add|added|plus)\b", "-": r"\b(subtract|subtracted|minus|difference|(more|fewer|less) \w+ than)\b",
          "*": r"\b(multiply|multiplied|times)\b", "/": r"\b(divide|divided)\b", "sqrt": r"\bsquare root\b"}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "/", ast.Mod: "%", ast.Pow: "**"}
_ARITHMETIC = re.compile(r"[\d(][\d\s().+\-*/%]*[\d)]")
# Where a task says which number comes second: "divided by 12", "divide the sum by 4", "subtract 44".
_SECOND = [("/", re.compile(r"\bdivided? (?:[^.?!]*? )?by (\d+(?:\.\d+)?)", re.IGNORECASE)),
           ("-", re.compile(r"\b(?:subtract|minus) (\d+(?:\.\d+)?)", re.IGNORECASE))]


def _parsed(expression: str) -> ast.Expression | None:
    try:
        return ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def evaluation_order(expression: str) -> list[str]:
    """The operators of an arithmetic expression in the order they are evaluated ("3 * (17 + 25)": +, *);
    none for text that is no arithmetic."""
    tree = _parsed(expression)
    if tree is None:
        return []
    order: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            visit(child)
        if isinstance(node, ast.BinOp) and type(node.op) in _SYMBOLS:
            order.append(_SYMBOLS[type(node.op)])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            order.append(node.func.id)  # a function: "sqrt(169)" takes the square root

    visit(tree)
    return order


def named_operations(task: str) -> list[tuple[str, str]]:
    """The operations a task names, in the order it names them: (operator, how it says it). Words
    ("add", "divided") count where they stand; an expression it writes ("(300 + 45) * 2") in the
    order it is evaluated."""
    found = [(m.start(), 0, symbol, m.group(0).lower())
             for symbol, pattern in _WORDS.items() for m in re.finditer(pattern, task, re.IGNORECASE)]
    for m in _ARITHMETIC.finditer(task):
        found += [(m.start(), i, symbol, symbol) for i, symbol in enumerate(evaluation_order(m.group(0)))]
    return [(symbol, said) for _, _, symbol, said in sorted(found)]


def _right_operands(expression: str) -> list[tuple[str, float]]:
    """(operator, the number right of it) for each operation of an expression whose right side is a number."""
    tree = _parsed(expression)
    return [] if tree is None else [(_SYMBOLS[type(node.op)], float(node.right.value)) for node in ast.walk(tree)
            if isinstance(node, ast.BinOp) and type(node.op) in _SYMBOLS
            and isinstance(node.right, ast.Constant) and type(node.right.value) in (int, float)]


def swapped_operands(task: str, calls: Sequence[tuple[str, str]]) -> list[str]:
    """What the task divides by or subtracts that no calculation put on the right of its operator
    ("12/42000" for "the budget divided by 12"), as "/ 12"; none when no call wrote arithmetic."""
    if not operations_done(calls):
        return []
    done = [pair for arguments, _ in calls for value in _strings(arguments) for pair in _right_operands(value)]
    wanted = [(symbol, float(m.group(1))) for symbol, pattern in _SECOND for m in pattern.finditer(task)]
    return [f"{symbol} {n:g}" for symbol, n in wanted if (symbol, n) not in done]


def _strings(arguments: str) -> list[str]:
    try:
        values = json.loads(arguments)
    except json.JSONDecodeError:
        return []
    return [v for v in values.values() if isinstance(v, str)] if isinstance(values, dict) else []


def operations_done(calls: Sequence[tuple[str, str]]) -> list[str]:
    """The operators the calls' arithmetic evaluated ((arguments as JSON, output) pairs), in order."""
    return [symbol for arguments, _ in calls for value in _strings(arguments) for symbol in evaluation_order(value)]


def operations_left(task: str, calls: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The operations the task names (operator: how it says it) that no calculation among `calls` did yet."""
    done = set(operations_done(calls))
    return {symbol: said for symbol, said in named_operations(task) if symbol not in done}


def out_of_order(task: str, calls: Sequence[tuple[str, str]]) -> bool:
    """Whether the calculations did the task's operations in another order than it gives them ("17*25",
    then "425 + 3" for "Add 17 and 25, then multiply the result by 3")."""
    named, done = [symbol for symbol, _ in named_operations(task)], operations_done(calls)
    if len(set(named)) < 2 or not done:
        return False
    steps = iter(done)
    return not all(symbol in steps for symbol in named)  # the named order is a subsequence of what was done
