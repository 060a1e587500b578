from agent.operations import (
    evaluation_order,
    named_operations,
    operations_done,
    operations_left,
    out_of_order,
    swapped_operands,
)

ADD_THEN_MULTIPLY = "Add 17 and 25, then multiply the result by 3."


def calc(expression: str, result: str) -> tuple[str, str]:
    return f'{{"expression": "{expression}"}}', result


def test_operations_are_read_in_the_order_they_are_evaluated():
    assert evaluation_order("3 * (17 + 25)") == ["+", "*"] and evaluation_order("17 + 25 * 3") == ["*", "+"]
    assert evaluation_order("inventory.csv") == [] and evaluation_order("1.0.0.0") == []
    assert named_operations(ADD_THEN_MULTIPLY) == [("+", "add"), ("*", "multiply")]
    assert named_operations("What is 2 * (300 + 45)?") == [("+", "+"), ("*", "*")]
    assert operations_done([('{"path": "inventory.csv"}', "item,count"), calc("12 // 5 % 2", "0")]) == ["/", "%"]


def test_what_is_left_and_what_was_done_out_of_order():
    assert operations_left("What is (300 + 45) * 2?", [calc("300 + 45", "345")]) == {"*": "*"}
    assert operations_left("Divide 1000 by 8, then add 5.", [calc("1000 / 8", "125")]) == {"+": "add"}
    assert out_of_order(ADD_THEN_MULTIPLY, [calc("17*25", "425"), calc("425 + 3", "428")])  # verified as 428 before
    assert not out_of_order(ADD_THEN_MULTIPLY, [calc("17 + 25", "42"), calc("42 * 3", "126")])
    assert not out_of_order(ADD_THEN_MULTIPLY, [calc("3 * (17 + 25)", "126")])
    assert out_of_order(ADD_THEN_MULTIPLY, [calc("17 + 25 * 3", "92")])  # precedence: the multiplication came first


def test_what_the_task_divides_by_or_subtracts_stands_right_of_the_operator():
    budget = "Using the notes, what is the budget in euros divided by 12?"
    assert swapped_operands(budget, [calc("12/42000", "0.0003")]) == ["/ 12"]  # verified as right before
    assert swapped_operands(budget, [calc("42000 / 12", "3500")]) == []
    assert swapped_operands("Multiply 12 by 12, then subtract 44.", [calc("12*12", "144"), calc("44 - 144", "-100")]) == ["- 44"]
    assert swapped_operands("Add 250 and 790, then divide the result by 4.", [calc("(250 + 790) / 4", "260")]) == []
    assert named_operations("How many more plums than pears are there?") == [("-", "more plums than")]


def test_a_function_the_task_names_is_an_operation_too():
    task = "What is the square root of 169? Use the calculator."
    assert operations_left(task, [calc("169**169", "huge")]) == {"sqrt": "square root"}  # verified before
    assert operations_left(task, [calc("sqrt(169)", "13")]) == {}
