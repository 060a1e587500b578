from agent.operations import evaluation_order, named_operations, operations_done, operations_left, out_of_order

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
