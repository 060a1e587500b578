"""What the next act turn may call, on the evidence so far (the cases come from real traces)."""

import json

from agent.offers import Observation, looping, next_offer
from tests.fixtures.grammar import admits
from tools import ToolRegistry


def calc(expression: str, result: str) -> Observation:
    return Observation("calculator", json.dumps({"expression": expression}), result, ok=True)


def names(offer) -> list[str]:
    return [s["function"]["name"] for s in offer.tools]


def expression(offer) -> dict:
    (calculator,) = [s for s in offer.tools if s["function"]["name"] == "calculator"]
    return calculator["function"]["parameters"]


def test_the_tools_a_task_names_come_first_then_all(tmp_path):
    registry = ToolRegistry.with_builtins(tmp_path)
    task = "Use the calculator: what is 37 * 91?"
    first = next_offer(registry, task, [], [], grounded=True)
    assert names(first) == ["calculator"] and first.must_call
    assert admits(expression(first), {"expression": "37 * 91"}) and not admits(expression(first), {"expression": "37 * 37"})
    after = next_offer(registry, task, [], [calc("37 * 91", "3367")], grounded=True, answer_only=True)
    assert after.tools == [] and after.held == "3367"  # the answer in hand is the answer
    free = next_offer(registry, task, [], [], grounded=False)
    assert "list_files" in names(free) and not free.must_call


def test_a_calculation_starts_from_what_is_told_and_goes_on_from_its_result(tmp_path):
    registry = ToolRegistry.with_builtins(tmp_path)
    floor = "Using the notes, on which floor is the server room? Add 10 to it with the calculator."
    first = expression(next_offer(registry, floor, ["The server room is on floor 7."], [], grounded=True))
    assert admits(first, {"expression": "10 + 7"}) and not admits(first, {"expression": "10*10*10"})
    assert not admits(first, {"expression": "10 * 7"})  # the task names an addition
    task = "Add 250 and 790, then divide the result by 4. Use the calculator."
    going_on = next_offer(registry, task, [], [calc("250 + 790", "1040")], grounded=True)
    assert names(going_on) == ["calculator"] and going_on.must_call
    step = expression(going_on)
    assert admits(step, {"expression": "1040 / 4"})
    assert not admits(step, {"expression": "1040 + 4"}) and not admits(step, {"expression": "250 / 4"})


def test_an_argument_that_loops_is_named_and_one_that_repeats_a_little_is_not():
    assert looping({"expression": "3*" * 80 + "3"}) == ("3*", 80)
    assert looping({"query": {"terms": ["東京, " * 9]}}) == ("東京, ", 9)
    assert looping({"n": "0" * 20}) == ("0", 20)
    for fine in ("1000000000000000", "(3+4)*(3+4)*(3+4)", "東京" * 10, "ATATATATATAT", "a, b, c, a, b, c"):
        assert looping({"x": fine}) is None, fine
