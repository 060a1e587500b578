"""Each grounding check on the failure it prevents (the cases come from real traces)."""

from agent.grounding import (
    answer_in_hand,
    grounded_numbers,
    grounding_problems,
    number_texts,
    numbers,
    tools_asked_for,
)

CALC = '{"expression": "4821 * 367"}'
README = '{"path": "README.md"}'


def test_a_quantity_answered_with_words_is_not_grounded():
    problems = grounding_problems("What is 4821 * 367?", "math", [(CALC, "1769307")])
    assert any("contains no number" in p for p in problems)
    assert grounding_problems("What is 4821 * 367?", "1769307", [(CALC, "1769307")]) == []
    assert grounding_problems("What is 4821 * 367?", "4821 * 367 = 1,769,307", [(CALC, "1769307")]) == []


def test_a_date_in_the_task_is_no_subtraction():
    """Qwen2.5-Coder-0.5B's "Monday" from weekday("2027-03-15") was refused: the date's hyphens read as minus signs."""
    weekday = [('{"date": "2027-03-15"}', "Monday")]
    assert grounding_problems("What day of the week is 2027-03-15?", "Monday", weekday) == []
    assert any("contains no number" in p for p in grounding_problems("What is 2027 - 3?", "Monday", weekday))


def test_a_number_nothing_produced_is_not_grounded():
    problems = grounding_problems("Using the notes, how many apples in 14 crates?", "42",
                                  [('{"query": "Zephyr apples"}', "A crate of Zephyr apples holds 36 apples.")])
    assert any("The number 42 appears in no tool result" in p for p in problems)
    assert grounding_problems("What is the budget in euros?", "4200 euros", [], notes=["The budget is 42000 euros."])
    assert grounding_problems("What is the budget in euros?", "42000 euros", [], notes=["The budget is 42000 euros."]) == []


def test_an_answer_about_something_else_is_not_grounded_once_tools_found_things():
    problems = grounding_problems("Read README.md. Who is the owner?", "The weather is fine",
                                  [(README, "# Orchard\nOwner: Tomasz.")])
    assert any("shares no key term" in p for p in problems)
    assert grounding_problems("Read README.md. Who is the owner?", "Tomasz", [(README, "# Orchard\nOwner: Tomasz.")]) == []
    assert grounding_problems("What is the capital of France?", "Paris", []) == []  # a direct answer needs no tool


def test_an_amount_that_ignores_the_last_result_is_suspect():
    task = "Add 17 and 25, then multiply the result by 3."
    calls = [('{"expression": "17 + 25"}', "42"), ('{"expression": "42 * 3"}', "126")]
    assert any("last tool result" in p for p in grounding_problems(task, "42", calls))
    assert grounding_problems(task, "126", calls) == []


def test_a_calculation_on_invented_numbers_grounds_nothing():
    echo = [('{"expression": "123456789"}', "123456789")]
    assert any("123456789" in p for p in grounding_problems("Which cable should be brought?", "123456789", echo))
    chain = [('{"expression": "12*12"}', "144"), ('{"expression": "144-44"}', "100")]
    assert grounded_numbers("12 by 12, less 44", chain) >= {144, 100}


def test_numbers_a_task_gives_in_words_are_known():
    """15% of 80 is 80 * 15 / 100: the 100 is the task's, as "percent"; "double" is 2, "a dozen" 12."""
    assert grounding_problems("What is 15% of 80?", "12", [('{"expression": "80 * 15 / 100"}', "12")]) == []
    assert grounded_numbers("Double 21, then add a dozen and two", []) >= {2, 12, 21}
    assert number_texts({42000.0, 3.5, -7.0}) == ["3.5", "42000", "7"]


def test_numbers_are_read_as_values():
    assert numbers("3,367 apples, -2.5 and 2023-03-22") >= {3367.0, -2.5, 2023.0}


def test_an_intermediate_result_leaves_a_task_number_unused():
    task = "Multiply 12 by 12, then subtract 44. Use the calculator."
    first = [('{"expression": "12 * 12"}', "144")]
    assert any("44 is not used yet" in p for p in grounding_problems(task, "144", first))
    both = [*first, ('{"expression": "144 - 44"}', "100")]
    assert grounding_problems(task, "100", both) == []
    # a number of the task that the answer itself carries is used (a lookup, no computation)
    assert grounding_problems("How many apples are in crate 7?", "7", [('{"query": "crate 7"}', "Crate 7 holds 7.")]) == []


def test_the_answer_is_in_hand_once_a_quantity_used_every_task_number():
    task = "Add 17 and 25, then multiply the result by 3."
    first = [('{"expression": "17 + 25"}', "42")]
    assert not answer_in_hand(task, first)  # 3 is still to come
    assert answer_in_hand(task, [*first, ('{"expression": "42 * 3"}', "126")])
    assert answer_in_hand("What is 37 * 91?", [('{"expression": "37 * 91"}', "3367")])
    # a file's contents hold many numbers: the calculation is still to come
    assert not answer_in_hand("Read inventory.csv and add the apples and pears.",
                              [('{"path": "inventory.csv"}', "item,count\napples,12\npears,7")])
    assert not answer_in_hand("Who is the owner?", [('{"path": "README.md"}', "7")])  # asks for no amount
    assert not answer_in_hand("What is 37 * 91?", [])


def test_a_computation_answered_with_its_own_input_is_not_a_result():
    sqrt = "What is the square root of 169? Use the calculator."
    echo = [('{"expression": "169"}', "169")]  # an echo computes nothing
    assert any("only repeats the task's number 169" in p for p in grounding_problems(sqrt, "169", echo))
    assert any("only repeats" in p for p in grounding_problems("What is 15 % 4?", "15% 4", []))
    assert grounding_problems(sqrt, "13", [('{"expression": "sqrt(169)"}', "13")]) == []
    # a result that happens to equal an input is still a result
    assert grounding_problems("What is 144 / 12?", "12", [('{"expression": "144 / 12"}', "12")]) == []


def test_an_answer_that_restates_the_task_is_not_grounded():
    listing = [('{"path": "."}', "README.md\ninventory.csv\nnotes.txt")]
    task = "List the files in the workspace. Which file is a CSV file?"
    assert any("restates the task" in p for p in grounding_problems(task, "The file is a CSV file", listing))
    assert grounding_problems(task, "inventory.csv", listing) == []


def test_a_calculation_must_use_every_number_of_the_task_even_on_a_looked_up_value():
    task = "Read inventory.csv and multiply the number of plums by 3 with the calculator."
    read = [('{"path": "inventory.csv"}', "item,count\napples,12\npears,7\nplums,30")]
    assert any("3 is not used yet" in p for p in grounding_problems(task, "12", read))
    assert grounding_problems(task, "90", [*read, ('{"expression": "30 * 3"}', "90")]) == []


def test_a_quoted_word_is_the_word():
    note = "The backup password hint is 'tidepool'."
    assert grounding_problems("What is the backup password hint?", "tidepool", [('{"path": "."}', "a.txt")], [note]) == []


def test_a_looked_up_number_must_come_from_the_line_about_what_is_asked():
    stock = [('{"path": "inventory.csv"}', "item,count\napples,12\npears,7\nplums,30\n")]
    problems = grounding_problems("Read inventory.csv. How many pears are there?", "12", stock)
    assert any("The number 12 comes from a line about something else" in p for p in problems)
    assert grounding_problems("Read inventory.csv. How many pears are there?", "7", stock) == []
    assert grounding_problems("Read inventory.csv. How many pear are there?", "There are 7 pears", stock) == []
    # computed numbers and the task's own are not looked up; evidence with no line about the task says nothing
    added = [*stock, ('{"expression": "12 + 7"}', "19")]
    assert grounding_problems("Read inventory.csv. What is the total of apples and pears?", "19", added) == []
    assert grounding_problems("How many crates are there?", "12", stock) == []


def test_a_calculation_answered_with_a_looked_up_value_is_not_a_result():
    stock = [('{"path": "inventory.csv"}', "item,count\napples,12\npears,7\n")]
    task = "Read inventory.csv and add the number of apples and pears with the calculator."
    assert any("no tool computed" in p for p in grounding_problems(task, "apples,12", stock))
    added = [*stock, ('{"expression": "12 + 7"}', "19")]
    assert grounding_problems(task, "19", added) == []
    notes = ["The budget is 42000 euros."]
    assert any("no tool computed" in p for p in grounding_problems("What is the budget divided by 12?", "42000", [], notes))


NOTES = ["The project codename is Bluefin. The lead engineer is Priya. The backup password hint is 'tidepool'. "
         "The budget is 42000 euros.", "A crate of Zephyr apples holds 36 apples. The orchard ships on Tuesdays."]
LISTING = ('{"path": "."}', "README.md\ninventory.csv\nnotes.txt")
OWNER = (README, "# Orchard\nThis repository tracks the orchard's harvest. Owner: Tomasz.")


def test_an_answer_from_a_sentence_about_something_else_is_not_grounded():
    task = "What is the backup password hint?"
    wrong = grounding_problems(task, "The orchard is owned by Tomasz. The answer is: Orchard", [LISTING, OWNER], NOTES)
    assert any("sentence about something else" in p for p in wrong)
    assert grounding_problems(task, "The hint is 'tidepool'", [LISTING, OWNER], NOTES) == []
    assert grounding_problems("Read README.md. Who is the owner?", "The owner of the orchard is Tomasz", [OWNER]) == []


def test_words_that_no_tool_or_note_said_are_not_grounded():
    made_up = grounding_problems("Read README.md. Who is the owner?", "The owner is a user of the [user_name]", [OWNER])
    assert any("says nothing that the tools or notes said" in p for p in made_up)
    assert grounding_problems("Read README.md. Who is the owner?", "Tomasz", [OWNER]) == []


def test_a_direct_answer_is_grounded_whatever_unrelated_notes_were_recalled():
    assert grounding_problems("What is the capital of France? Answer in one word.", "Paris", [], NOTES) == []
    assert grounding_problems("What is the capital of France? Answer in one word.", "Paris", [LISTING], NOTES) == []


def test_the_tasks_own_number_is_not_an_amount_the_notes_tell():
    task = "Using the notes, how many apples are in 14 crates of Zephyr apples? Use the calculator."
    assert any("only repeats the task's number 14" in p for p in grounding_problems(task, "14", [LISTING], NOTES))
    assert grounding_problems(task, "504", [('{"expression": "14 * 36"}', "504")], NOTES) == []


def test_a_calculation_must_use_what_the_evidence_says_about_the_task():
    task = "Using the notes, what is the budget in euros divided by 12? Use the calculator."
    guessed = grounding_problems(task, "0.0833", [('{"expression": "12/12/12"}', "0.0833")], NOTES)
    assert any("does not use what the evidence says about budget, euro" in p for p in guessed)
    assert grounding_problems(task, "3500", [('{"expression": "42000 / 12"}', "3500")], NOTES) == []
    total = "Read inventory.csv. What is the total of apples, pears and plums? Use the calculator."
    inventory = [('{"path": "inventory.csv"}', "item,count\napples,12\npears,7\nplums,30\n")]
    cubed = grounding_problems(total, "1728", [*inventory, ('{"expression": "12*12*12"}', "1728")], NOTES)
    assert any("does not use what the evidence says about pear, plum" in p for p in cubed)
    assert grounding_problems(total, "49", [*inventory, ('{"expression": "12 + 7 + 30"}', "49")], NOTES) == []
    crates = "Using the notes, how many apples are in 14 crates of Zephyr apples?"  # no operation named
    assert grounding_problems(crates, "2744", [('{"expression": "14*14*14"}', "2744")], NOTES)


def test_a_task_asks_for_the_tools_it_names_or_whose_values_it_names():
    read_file = {"function": {"name": "read_file", "parameters": {"properties": {"path": {"enum": ["README.md", "."]}}}}}
    tools = [{"function": {"name": "calculator"}}, {"function": {"name": "list_files"}}, read_file]
    assert tools_asked_for("What is 37 * 91? Use the calculator.", tools) == ["calculator"]
    assert tools_asked_for("List the files in the workspace. Which file is a CSV file?", tools) == ["list_files"]
    assert tools_asked_for("Read README.md. Who is the owner?", tools) == ["read_file"]
    assert tools_asked_for("What is the capital of France?", tools) == []
    assert tools_asked_for("Which file is bigger? Tell me about README.mdx", tools) == []  # a word, not its start


def test_every_operation_the_task_names_is_done():
    task = "Divide 1000 by 8, then add 5. Use the calculator."
    divided_twice = [('{"expression": "1000 / 8"}', "125"), ('{"expression": "125 / 5"}', "25")]
    assert any("No calculation did what the task names (add)" in p for p in grounding_problems(task, "25", divided_twice))
    right = [('{"expression": "1000 / 8"}', "125"), ('{"expression": "125 + 5"}', "130")]
    assert grounding_problems(task, "130", right) == []


def test_the_operations_are_judged_on_the_calculation_that_gave_the_answer():
    task = "Add 17 and 25, then multiply the result by 3. Use the calculator."
    wrong_then_again = [('{"expression": "17*25"}', "425"), ('{"expression": "425 + 3"}', "428"),
                        ('{"expression": "17*25 + 3"}', "428")]  # all calls together did + then *, the answer's did not
    assert any("another order" in p for p in grounding_problems(task, "428", wrong_then_again))
    right_after_wrong = [('{"expression": "17*25"}', "425"), ('{"expression": "17 + 25"}', "42"),
                         ('{"expression": "42 * 3"}', "126")]
    assert grounding_problems(task, "126", right_after_wrong) == []
