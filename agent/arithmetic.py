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
from dataclasses import dataclass, replace

from tools.builtins.calculator import CalculatorError, calculate

_OPERATORS = {"×": "*", "·": "*", "÷": "/", "x": "*", "X": "*", "\\times": "*", "\\cdot": "*", "\\div": "/", "−": "-"}
_NUMBER = r"\d+(?:[.,]\d+)*"
_OPERATOR = r"(?:[-+*/×·÷xX−]|\\times|\\cdot|\\div)"
_TERM = rf"(?:\(\s*)*-?{_NUMBER}(?:\s*\))*"
_EXPRESSION = rf"{_TERM}(?:\s*{_OPERATOR}\s*{_TERM})*"
_SIGN = r"\s*(=|≈|\\approx)\s*\$?\s*"
# A chain of expressions joined by = or ≈ ("(9 * 9/5) + 32 = 16.2 + 32 = 48.2"), not followed by more digits.
_CHAIN = re.compile(rf"{_EXPRESSION}(?:{_SIGN}{_EXPRESSION})+(?![\d.,]*\d)")

# A line that sets a name to an expression, words after it ("Fahrenheit = 64.4 degrees"), but no more digits
_LINE = re.compile(rf"^[^\S\n]*(?P<name>[^\W\d][^=\n\d]*?)[^\S\n]*=[^\S\n]*\$?(?P<expression>{_EXPRESSION})[^\d\n=]*$",
                   re.MULTILINE)
DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}")


@dataclass(frozen=True)
class WrongEquation:
    expression: str  # as the answer wrote it
    stated: str
    actual: float
    at: int = 0  # where `stated` starts in the text
    end: int = 0  # where its chain ends ("... = 32.4 + 32 = 64.4")
    final: str = ""  # the chain's last side ("64.4")

    def __str__(self) -> str:
        return f"{self.expression} is {_shown(self.actual)}, not {self.stated}"


def wrong_equations(text: str) -> list[WrongEquation]:
    """The equations in the text whose stated result is not what the expression comes to. In a chain
    (a = b = c) each side is checked against the next: "9 * 9/5 + 32 = 16.2 + 32 = 48.2" holds. Lines
    that name the same thing ("F = (9 * 9/5) + 32", then "F = 162/5 + 32") are a chain too."""
    wrong: list[WrongEquation] = []
    for sides in _chains(text):
        final, end = sides[-1][0].strip(), sides[-1][1] + len(sides[-1][0].rstrip())
        for (left, _, _), (right, at, sign) in zip(sides, sides[1:]):
            found = _wrong(left, sign, right, at)
            if found and all(w.at != found.at for w in wrong):
                wrong.append(replace(found, end=end, final=final))
    return sorted(wrong, key=lambda w: w.at)


def _chains(text: str) -> list[list[tuple[str, int, str]]]:
    """Each chain of expressions joined by = or ≈, in a line or over lines that set the same name:
    [(side, where it starts, the sign before it)]."""
    chains = []
    for match in _CHAIN.finditer(text):
        signs = list(re.finditer(_SIGN, match.group()))
        ends = [0, *(x for s in signs for x in (s.start(), s.end())), len(match.group())]
        before = ["=", *(s.group(1) for s in signs)]
        chains.append([(match.group()[a:b], match.start() + a, sign)
                       for (a, b), sign in zip(zip(ends[::2], ends[1::2]), before)])
    return chains + _line_chains(text)


def _wrong(left: str, sign: str, right: str, at: int) -> WrongEquation | None:
    """The equation `left sign right` when it is wrong; `at`: where `right` starts in the text."""
    written = _unwrapped(left.strip())
    if not re.search(rf"\d\s*\)*\s*{_OPERATOR}", written) or DATE.search(written + " " + right):
        return None  # a lone number is no equation; 2026-12-01 is a date, not a subtraction
    stated = _unwrapped(right.strip())
    try:
        actual, value = _value(written), _value(stated)
    except (CalculatorError, ValueError, OverflowError, ZeroDivisionError):
        return None
    if not math.isfinite(actual) or _agrees(actual, value, stated, approximate=sign != "="):
        return None
    return WrongEquation(written, stated, actual, at + right.index(stated))


def _line_chains(text: str) -> list[list[tuple[str, int, str]]]:
    """The chains of consecutive lines that set the same name, in any words, to an expression and nothing
    after it but words ("Fahrenheit = 32.4 + 32"): [(expression, where it starts, "=")] each."""
    chains: list[list[tuple[str, int, str]]] = []
    previous = None  # (name, end) of the line before, if it sets one
    for line in re.finditer(_LINE, text):
        name, side = line.group("name").strip().casefold(), (line.group("expression"), line.start("expression"), "=")
        if previous and previous[0] == name and not text[previous[1]:line.start()].strip():
            chains[-1].append(side)
        else:
            chains.append([side])
        previous = (name, line.end())
    return [chain for chain in chains if len(chain) > 1]


def mended(text: str, wrong: WrongEquation) -> str | None:
    """The text with the equation's stated result put right, and the same number where the text states it
    again after it ("= 46.05 ... The final answer is 46.05 US dollars"). Where the wrong side is itself an
    expression ("(9 * 9/5) + 32 = 162/5 + 32 = 32.4 + 32 = 64.4"), the rest of its chain goes with it and
    the chain's last number is put right after it; None when that is not a plain number either."""
    if re.fullmatch(_NUMBER, wrong.stated):
        end, stated = wrong.at + len(wrong.stated), wrong.stated
    elif wrong.end and re.fullmatch(_NUMBER, wrong.final):
        end, stated = wrong.end, wrong.final
    else:
        return None
    decimals = len(_plain(stated).partition(".")[2])
    right = _shown(round(wrong.actual, max(decimals, 2)))
    again = re.compile(rf"(?<![\d.,]){re.escape(stated)}(?![\d]|[.,]\d)")
    return text[: wrong.at] + right + again.sub(right, text[end:])


def _unwrapped(written: str) -> str:
    """Without opening brackets that nothing closes ("\\(34.5 \\times 3 = ...") or closing ones nothing opened."""
    while written.startswith("(") and written.count("(") > written.count(")"):
        written = written[1:].lstrip()
    while written.endswith(")") and written.count(")") > written.count("("):
        written = written[:-1].rstrip()
    return written


def _value(expression: str) -> float:
    for symbol, operator in _OPERATORS.items():
        expression = expression.replace(symbol, operator)
    return float(calculate(re.sub(_NUMBER, lambda m: _plain(m.group()), expression)))


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
    """Whether `stated` (a number, or an expression of rounded numbers) comes to `actual`: each number it
    writes may be rounded to the decimals it shows."""
    numbers = re.findall(_NUMBER, stated)
    rounding = sum(0.5 * 10 ** -len(_plain(n).partition(".")[2]) for n in numbers)
    if abs(actual - value) <= rounding + 1e-9 * max(1.0, abs(actual)):
        return True
    if approximate:
        return abs(actual - value) <= 0.01 * abs(actual)
    # Long decimals slip in the last digit (70 * 2.20462 = 154.324, not 154.3234); a whole result must be exact.
    return actual != round(actual) and abs(actual - value) <= 1e-3 * abs(actual)


def _shown(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"
