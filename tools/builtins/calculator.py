"""Arithmetic from text, parsed with `ast` and evaluated node by node. Never `eval`."""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field

from tools.tool import SeenNumbers

MAX_INPUT = 500
MAX_EXPONENT = 1000
MAX_DIGITS = 4000

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "sinh": math.sinh, "cosh": math.cosh, "tanh": math.tanh, "degrees": math.degrees, "radians": math.radians,
    "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil, "min": min, "max": max,
    "hypot": math.hypot, "gcd": math.gcd,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}


class CalculatorError(ValueError):
    pass


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_DIGITS * 3.33:
        raise CalculatorError(f"the result has more than {MAX_DIGITS} digits")
    return value


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"exponents above {MAX_EXPONENT} are refused")
        if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_DIGITS * 3.33:
                raise CalculatorError(f"the result has more than {MAX_DIGITS} digits")
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords:
        args = [_evaluate(a) for a in node.args]
        return _check_size(_FUNCTIONS[node.func.id](*args))
    what = type(node).__name__
    if isinstance(node, ast.Name):
        what = f"name '{node.id}'"
    elif isinstance(node, ast.Call):
        what = "a call to something other than " + ", ".join(sorted(_FUNCTIONS))
    raise CalculatorError(f"only numbers, + - * / // % **, parentheses, constants and math functions are allowed, not {what}")


def calculate(expression: str) -> int | float:
    if len(expression) > MAX_INPUT:
        raise CalculatorError(f"the expression is longer than {MAX_INPUT} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise CalculatorError(f"not an arithmetic expression: {exc}") from None
    try:
        return _evaluate(tree)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except (OverflowError, RecursionError):
        raise CalculatorError("the number is too large") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CalculatorError):
            raise
        raise CalculatorError(str(exc)) from None


NUMBER_PATTERN = r"[0-9]{1,15}(?:\.[0-9]{1,6})?(?:e[-+]?[0-9]{1,3})?"


def expression_pattern(number: str = NUMBER_PATTERN) -> str:
    """The calculator's syntax as a regular expression whose numbers match `number`.

    Constrained decoding follows it, so a model cannot write what is no arithmetic at all
    ("1.0.0.0", "total.json", "345, 345") or a bare number, which computes nothing; the agent
    narrows `number` to the numbers its run has seen. Stricter than calculate() (functions do not
    nest), looser where a regular expression must be (parentheses are not matched), which is why
    validation does not apply it.
    """
    function = "(?:" + "|".join(sorted(_FUNCTIONS, key=len, reverse=True)) + r")\( *"
    atom = rf"(?:{number}|{'|'.join(_CONSTANTS)})"
    signs, closing = r"(?:[-+] *|\( *)*", r"(?: *\))*"
    simple = f"{signs}{atom}{closing}"
    call = rf"{function}{simple}(?: *(?:\*\*|//|[-+*/%,]) *{simple})* *\)"  # commas only in here
    operand = f"{signs}(?:{atom}|{call}){closing}"
    joiner = r" *(?:\*\*|//|[-+*/%]) *"  # not `operator`: the module of that name is imported here
    rest = f"(?:{joiner}{operand})*"  # not "(...)+": llguidance cannot then bound the string's length
    # at least one operation or function: a bare number computes nothing ("1000", then "5", then "8")
    return rf"^ *(?:{operand}{joiner}{operand}{rest}|{signs}{call}{closing}{rest}) *$"


def chain_pattern(values: Sequence[str], operators: Sequence[str]) -> str:
    """Two or more of `values`, each used at most as often as listed, joined by `operators`, with
    parentheses where wanted: one step of a calculation ("345 * 2" after "300 + 45" for "(300 + 45) * 2",
    not "345 - 345"; "250 + 790", not "250*250*250...")."""
    joiner = " *(?:" + "|".join(re.escape(o) for o in sorted(operators, key=len, reverse=True)) + ") *"

    def chains(left: tuple[str, ...], count: int) -> str:
        options = []
        for value in sorted(set(left)):
            rest = list(left)
            rest.remove(value)
            operand = rf"(?:\( *)?{re.escape(value)}(?: *\))?"
            tail = f"(?:{joiner}{chains(tuple(rest), count + 1)})" if rest else ""
            options.append(operand + (tail + "?" if tail and count >= 1 else tail))
        return "(?:" + "|".join(options) + ")"

    return f"^ *{chains(tuple(values), 0)} *$"


def grounded_expression(seen: SeenNumbers) -> str:
    """The calculator's pattern for the numbers a run has seen (Tool's `grounded`)."""
    if seen.each_once and 2 <= len(seen.numbers) <= 5:
        return chain_pattern(seen.numbers, seen.operators)
    return expression_pattern("(?:" + "|".join(re.escape(n) for n in sorted(set(seen.numbers), key=len, reverse=True)) + ")")


Expression = Annotated[str, Field(max_length=MAX_INPUT, json_schema_extra={"pattern": expression_pattern()})]


def calculator(expression: Expression) -> str:
    """Compute an arithmetic expression and return the number.

    Args:
        expression: The arithmetic to compute: numbers with + - * / // % ** and parentheses, pi, e, and functions such as sqrt, log, sin, round.
    """
    result = calculate(expression)
    if isinstance(result, float) and result.is_integer() and abs(result) < 1e15:
        return str(int(result))
    return str(result)
