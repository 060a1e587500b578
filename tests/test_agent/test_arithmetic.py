"""The equations an answer writes, worked out again (agent/arithmetic.py)."""

import pytest

from agent.arithmetic import mended, wrong_equations
from agent.checks import Evidence, SumsHold


@pytest.mark.parametrize("text", [
    "41.25 * 1.08 = 44.55 US dollars",
    r"\(34.5 \times 3 = 103.5\)",
    "1/3 = 0.33",  # rounded to the decimals it shows
    "41,25 × 1,08 = 44,55 USD",  # decimal commas
    "1,234 + 1 = 1,235",  # thousands
    "(352 + 276) = 628 páginas",
    "9 × 9 ÷ 5 + 32 = 48.2 °F",
    "41.25 * 1.08 ≈ 44.6",
    "70 * 2.20462 = 154.324 pounds",  # 154.3234: a slip in the last decimal, not a wrong answer
    "2026-12-01 = 5 days later",  # a date is not a subtraction
    "10 / 0 = 5",  # nothing it can work out
    "2**10000 = 1",
    "The answer is 42.",
    "(9 * 9/5) + 32 = 16.2 + 32 = 48.2 degrees Fahrenheit",  # a chain: each side against the next
    "1/3 + 1 = 0.33 + 1 = 1.33",  # the middle side's numbers rounded to what they show
    "F = (9 * 9/5) + 32\nF = 16.2 + 32\n\nF = 48.2 °F",  # a chain over lines, right
    "Price = 3 * 2\nCost = 7",  # different names: no chain
    "x = 3 * 2\nSo 7 things.\nx = 7",  # a line between: no chain
])
def test_right_or_unreadable_equations_are_left_alone(text):
    assert wrong_equations(text) == []


@pytest.mark.parametrize(("text", "message"), [
    ("41.25 * 1.08 = 46.05", "41.25 * 1.08 is 44.55, not 46.05"),
    (r"\[34.5 \times 3 = 100.5\]", r"34.5 \times 3 is 103.5, not 100.5"),
    ("26 - 15 = 9 grados", "26 - 15 is 11, not 9"),
    ("3 x 4 = 13", "3 x 4 is 12, not 13"),
    ("41,25 × 2 = 80,5", "41,25 × 2 is 82.5, not 80,5"),
    ("1/3 ≈ 0.5", "1/3 is 0.333333, not 0.5"),
    ("1998 + 2 = 2001", "1998 + 2 is 2000, not 2001"),  # a whole result must be exact
    ("(9 * 9/5) + 32 = 16.2 + 32 = 50.2", "16.2 + 32 is 48.2, not 50.2"),
    ("12 * 3 = 30 + 6 = 37", "30 + 6 is 36, not 37"),
    # lines that set the same name are a chain (Qwen2.5-Coder-1.5B's working for Bergen's high in Fahrenheit)
    ("Fahrenheit = (Celsius * 9/5) + 32\nFahrenheit = (9 * 9/5) + 32\nFahrenheit = 162/5 + 32\n"
     "Fahrenheit = 32.4 + 32\nFahrenheit = 64.4\nThe high will be 64.4 degrees Fahrenheit.",
     "(9 * 9/5) + 32 is 48.2, not 162/5 + 32"),
    ("Gesamt = 34,5 × 3\n\nGesamt = 100,5 €", "34,5 × 3 is 103.5, not 100,5"),
])
def test_a_wrong_result_is_named_with_the_right_one(text, message):
    assert [str(w) for w in wrong_equations(text)] == [message]


def test_the_check_refuses_a_wrong_sum_and_has_nothing_to_say_otherwise():
    evidence = Evidence("What do 3 desk lamps cost?")
    finding = SumsHold()("3 × 34.5 = 100.5 euros", evidence)
    assert not finding.passed and "3 × 34.5 is 103.5, not 100.5" in finding.reason and not finding.call_next
    assert SumsHold()("3 × 34.5 = 103.5 euros", evidence) is None


@pytest.mark.parametrize(("text", "put_right"), [
    ("41.25 * 1.08 = 46.05\nThe toaster costs 46.05 US dollars (not 146.05, not 46.055).",
     "41.25 * 1.08 = 44.55\nThe toaster costs 44.55 US dollars (not 146.05, not 46.055)."),
    ("189.0 * 100.00 = 189,000 yen, so 189,000 yen.", "189.0 * 100.00 = 18900 yen, so 18900 yen."),
    ("34.5 × 3 = 100.5 € — 100.5 € in all", "34.5 × 3 = 103.5 € — 103.5 € in all"),
    ("10 / 8 = 2 hours", "10 / 8 = 1.25 hours"),
    ("Costs 46.05 before; 41.25 * 1.08 = 46.05", "Costs 46.05 before; 41.25 * 1.08 = 44.55"),  # not before the working
    ("Total = 34.5 * 3\nTotal = 100.5 euros\nIn all 100.5 euros.", "Total = 34.5 * 3\nTotal = 103.5 euros\nIn all 103.5 euros."),
])
def test_a_wrong_result_is_mended_where_it_is_stated_and_after(text, put_right):
    (wrong,) = wrong_equations(text)
    assert mended(text, wrong) == put_right
    assert wrong_equations(put_right) == []


@pytest.mark.parametrize(("text", "put_right"), [
    ("(9 * 9/5) + 32 = 16.2 + 33 = 49.2, so 49.2 °F", "(9 * 9/5) + 32 = 48.2, so 48.2 °F"),
    # Qwen2.5-Coder-1.5B's working for Bergen: told only what was wrong, it got further off each retry
    ("Fahrenheit = (9 * 9/5) + 32\nFahrenheit = 162/5 + 32\nFahrenheit = 32.4 + 32\nFahrenheit = 64.4\n"
     "The high will be 64.4 degrees Fahrenheit.",
     "Fahrenheit = (9 * 9/5) + 32\nFahrenheit = 48.2\nThe high will be 48.2 degrees Fahrenheit."),
])
def test_a_wrong_side_that_is_an_expression_takes_the_rest_of_its_chain_with_it(text, put_right):
    (wrong,) = wrong_equations(text)
    assert mended(text, wrong) == put_right
    finding = SumsHold()(text, Evidence("Bergen in Fahrenheit?"))
    assert not finding.passed and finding.mended == put_right


def test_a_chain_that_ends_on_an_expression_is_not_mended():
    (wrong,) = wrong_equations("(9 * 9/5) + 32 = 16.2 + 33")
    assert mended("(9 * 9/5) + 32 = 16.2 + 33", wrong) is None
