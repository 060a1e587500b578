"""Answers, plan steps and verdict reasons in any script, with currency signs and units, as the
grammar the engine decodes with admits them (agent/turns.py)."""

import pytest

from agent.turns import ANSWER_VALUE, REASON_PATTERN, STEP_PATTERN, TEXT_ANSWER
from tests.fixtures.grammar import admits, admits_text


def string(pattern: str) -> dict:
    return {"type": "string", "pattern": pattern}


@pytest.mark.parametrize("step", ["Look up the price", "東京の天気を調べる", "Buscar el precio del libro",
                                  "Ça coûte 12 € de plus", "Умножить цену на 3"])
def test_plan_steps_and_reasons_in_any_script(step):
    assert admits(string(STEP_PATTERN), step) and admits(string(REASON_PATTERN), step)


@pytest.mark.parametrize("fragment", ["./37 * 91", "10.00", "a"])
def test_fragments_are_still_not_steps(fragment):
    assert not admits(string(STEP_PATTERN), fragment)


@pytest.mark.parametrize("answer", ["€119,500", "−40 °C", "東京", "¿Quién? Lucía Ferrer", "£3.50", "(about 3)"])
def test_answers_open_with_a_currency_sign_a_minus_or_any_letter(answer):
    assert admits(ANSWER_VALUE, answer)


@pytest.mark.parametrize("answer", ["€27", "東京です。", "The kettle costs 27.0.", "```python\nprint(1)\n```", "`x` is 3"])
def test_a_text_answer_is_any_text(answer):
    assert admits_text(TEXT_ANSWER, answer)


@pytest.mark.parametrize("call", ['{"name": "weekday", "arguments": {"date": "2027-03-15"}}', '[{"name": "add"}]',
                                  '<tool_call>\n{"name": "add"}', '```json\n{"name": "add"}\n```', ' {"name": "add"}'])
def test_a_text_answer_cannot_open_like_a_call(call):
    assert not admits_text(TEXT_ANSWER, call)
