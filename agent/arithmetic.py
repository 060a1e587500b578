"""Equations an answer writes out ("41.25 * 1.08 = 46.05", "\\(34.5 \\times 3 = 103.5\\)"), worked out again.

A model that computes in its answer is often wrong: Qwen2.5-Coder-1.5B wrote 41.25 * 1.08 = 46.05.
Only digits, operators and "=" are read, so this holds in any language. An expression is worked out
by the calculator's parser (`ast`, never `eval`); the stated result may be rounded to the decimals
it shows ("1/3 = 0.33"), one that is not whole may be off by 0.1% (a slip in the last of many
decimals), and one written with "≈" by 1%.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tools.builtins.calculator import CalculatorError, calculate

_OPERATORS = {"×": "*", "·": "*", "÷": "/", "x": "*", "X": "*", "\\times": "*", "\\cdot": "*", "\\div": "/", "−": "-"}
_NUMBER = r"\d+(?:[.,]\d+)*"
# An expression of at least two numbers and an operator between them, then = or ≈, then the result.
_EQUATION = re.compile(
    rf"((?:\(\s*)*-?{_NUMBER}(?:\s*\))*(?:\s*(?:[-+*/×·÷xX−]|\\times|\\cdot|\\div)\s*(?:\(\s*)*-?{_NUMBER}"
    rf"(?:\s*\))*)+)\s*(=|≈|\\approx)\s*\$?\s*(-?{_NUMBER})(?![\d.,]*\d)")

_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}")


@dataclass(frozen=True)
class WrongEquation:
    expression: str  # as the answer wrote it
    stated: str
    actual: float

    def __str__(self) -> str:
        return f"{self.expression} is {_shown(self.actual)}, not {self.stated}"


def wrong_equations(text: str) -> list[WrongEquation]:
    """The equations in the text whose stated result is not what the expression comes to."""
    wrong = []
    for match in _EQUATION.finditer(text):
        written, sign, stated = match.group(1).strip(), match.group(2), match.group(3)
        if _DATE.search(written):  # 2026-12-01 is a date, not a subtraction
            continue
        while written.startswith("(") and written.count("(") > written.count(")"):  # "\\(34.5 \\times 3 = ..."
            written = written[1:].lstrip()
        expression = written
        for symbol, operator in _OPERATORS.items():
            expression = expression.replace(symbol, operator)
        expression = re.sub(_NUMBER, lambda m: _plain(m.group()), expression)
        try:
            actual = float(calculate(expression))
            value = float(_plain(stated))
        except (CalculatorError, ValueError, OverflowError, ZeroDivisionError):
            continue
        if not math.isfinite(actual) or _agrees(actual, value, _plain(stated), approximate=sign != "="):
            continue
        wrong.append(WrongEquation(written, stated, actual))
    return wrong


def _plain(number: str) -> str:
    """1,234.5 and 1.234,5 and 41,25 as Python reads them: with both marks the first groups thousands;
    commas before groups of three digits group thousands; another comma is a decimal one."""
    if "," in number and "." in number:
        thousands = "," if number.rfind(",") < number.rfind(".") else "."
        return number.replace(thousands, "").replace(",", ".")
    if re.fullmatch(r"\d{1,3}(,\d{3})+", number):
        return number.replace(",", "")
    return number.replace(",", ".")


def _agrees(actual: float, value: float, stated: str, approximate: bool) -> bool:
    decimals = len(stated.partition(".")[2])
    if abs(actual - value) <= 0.5 * 10 ** -decimals + 1e-9 * max(1.0, abs(actual)):
        return True
    if approximate:
        return abs(actual - value) <= 0.01 * abs(actual)
    # Long decimals slip in the last digit (70 * 2.20462 = 154.324, not 154.3234); a whole result must be exact.
    return actual != round(actual) and abs(actual - value) <= 1e-3 * abs(actual)


def _shown(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"
