import pytest

from agent.checks import (
    DEFAULT,
    SMALL_MODEL,
    Evidence,
    Grounded,
    GuessedAboutAName,
    NamesAnUncalledTool,
    NotACall,
    NotALoop,
    NotAMessage,
    StatesAResult,
    code_calls,
    judge,
)
from agent.offers import Observation


def schema(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}


TOOLS = [schema("convert_units"), schema("lookup_employee"), schema("add"), schema("math.factorial")]


def seen(*results: tuple[str, str], task: str = "task") -> Evidence:
    return Evidence(task, [Observation(name, "{}", shown, not shown.startswith("error:"), False) for name, shown in results],
                    tools=TOOLS)


# Right answers from tasks the checks were not written for: none may be refused by the default set.
RIGHT = [
    ("What is the temperature in Hanoi in Fahrenheit?", "It is 87.8 °F in Hanoi.", [("convert_units", "87.8")]),
    ("How many years from 2011 to 2026?", "15 years.", []),
    ("How many seconds are in an hour?", "There are 3600 seconds in an hour.", []),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au.", []),
    ("What is Ana's salary?", "€119,500", [("lookup_employee", '{"name": "Ana", "salary_eur": 119500}')]),
    ("日本の首都は?", "東京", []),
    ("Add 2 and 3.", "2 + 3 = 5; I used add to compute it.", [("add", "5")]),
    ("What is 5 factorial?", "120", [("math.factorial", "120")]),
    ("Translate 'thank you' into French.", "Merci.", []),
    ("Is 'Night Harbor' longer than 300 pages?", "I cannot tell whether it has more than 300 pages.", []),
    ("Translate 'thank you' into French.", "1. Identify the language: English.\n2. In French, 'thank you' is 'merci'.", []),
]


@pytest.mark.parametrize("task, answer, results", RIGHT)
def test_the_default_checks_refuse_no_right_answer(task, answer, results):
    assert judge(DEFAULT, answer, seen(*results, task=task)).passed


def test_a_call_written_as_text_is_refused_and_asks_for_the_call():
    for text in ['<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>',
                 'I will call {"name": "convert_units", "arguments": {"value": 1}}']:
        finding = NotACall()(text, seen())
        assert finding and not finding.passed and finding.call_next and finding.rule == "not_a_call"
    assert NotACall()('{"name": "Ana", "salary": 3}', seen()) is None  # JSON, not a call of an offered tool


PRICE_TOOLS = [{"type": "function", "function": {"name": name, "parameters": {
    "type": "object", "properties": {p: {"type": "number"} for p in params}, "required": list(params)}}}
    for name, params in (("product_price", ["product"]), ("multiply", ["a", "b"]))]


def test_a_call_written_as_code_that_the_run_never_made_is_refused_but_one_it_made_is_not():
    """Qwen2.5-Coder-1.5B's answer: the price it looked up, and a multiplication it wrote with a made-up result."""
    made = [Observation("product_price", '{"product": "notebook"}', "3.8", True, False)]
    evidence = Evidence("How much do 4 notebooks cost?", made, tools=PRICE_TOOLS)
    answer = '1. product_price({"product": "notebook"}) -> 3.8\n2. multiply(3.8, 4) -> 15.2\nSo 15.2.'
    finding = NotACall()(answer, evidence)
    assert finding and not finding.passed and finding.call_next
    assert NotACall()('product_price({"product": "notebook"}) returned 3.8, so 4 cost 15.2.', evidence) is None
    assert NotACall()("multiply(a, b) multiplies; multiply(3.8) is short of an argument.", evidence) is None


@pytest.mark.parametrize(("text", "calls"), [
    ('add_days("2026-12-01", 100) gives it', [("add_days", {"date": "2026-12-01", "days": 100})]),
    ("add_days(days=100, date='2026-12-01')", [("add_days", {"days": 100, "date": "2026-12-01"})]),
    ('add_days({"date": "2026-12-01", "days": 100}) then x.add_days(1, 2)', [("add_days", {"date": "2026-12-01", "days": 100})]),
    ("add_days(__import__('os').system('ls'), 1)", []),  # literals only: nothing is run
    ("add_days(\"2026-12-01\", 100", []),  # never closed
])
def test_calls_written_as_code_are_read_with_literal_arguments(text, calls):
    properties = {"date": {"type": "string"}, "days": {"type": "integer"}}
    tools = [{"type": "function", "function": {"name": "add_days", "parameters": {
        "type": "object", "properties": properties, "required": ["date", "days"]}}}]
    assert code_calls(text, tools) == calls


def test_talk_about_a_tool_not_yet_called_is_refused_but_naming_a_called_one_is_not():
    preamble = "To find the number of pounds in 70 kg, we can use the `convert_units` function."
    assert not NamesAnUncalledTool()(preamble, seen()).passed
    assert NamesAnUncalledTool()(preamble, seen(("convert_units", "154.3"))) is None
    assert NamesAnUncalledTool()("Call lookup_employee(name) first.", seen()) is not None
    assert NamesAnUncalledTool()("You can add the two numbers: 5.", seen()) is None  # a word, not a tool named as code


def test_a_copied_error_or_reason_is_refused():
    error = "error: you already made this call; its result was: error: WorkspaceError: 'x' is not a folder"
    copied = "You already made this call; its result was: error: Workspace"
    assert NotAMessage()(copied, seen(("read_file", error))).rule == "not_a_message"
    reason = "The number 4200 appears in no tool result, note or the task; use what the tools found"
    assert NotAMessage()(reason, Evidence("What is the budget?", said=[reason])) is not None
    assert NotAMessage()("The budget is 42000 euros.", Evidence("What is the budget?", said=[reason])) is None
    error = 'error: KeyError: "the shop does not sell \'desk lamps, quantity: 3\'; it sells: desk lamp, kettle"'
    answer = 'The shop does not sell "desk lamps, quantity: 3"; it sells desk lamp, kettle, toaster.'
    assert NotAMessage()(answer, seen(("product_price", error))) is not None


def test_an_answer_is_verified_when_it_states_a_result_rounded_or_not():
    assert StatesAResult()("About 154.3 pounds.", seen(("convert_units", "154.324"))).passed
    assert StatesAResult()("It was written by Mirela Voss.", seen(("find_book", '{"author": "Mirela Voss"}'))).passed
    assert StatesAResult()("I do not know.", seen(("convert_units", "154.324"))) is None
    assert StatesAResult()("15 years.", seen()) is None
    divided = Evidence("What is 81 / 9?", [Observation("calculator", '{"expression": "81 / 9"}', "9.0", True)])
    assert StatesAResult()("9", divided) is None  # the call was given 9: the result may echo it
    times = Evidence("What is 3 * 1 * 3?", [Observation("calculator", '{"expression": "3 * 1 * 3"}', "9", True)])
    assert StatesAResult()("9", times).passed  # the result, though the task says 3 and 1
    echoed = Observation("convert_units", '{"value": 12, "from_unit": "gal", "to_unit": "gal"}', "12.0", True)
    assert StatesAResult()("12.0", Evidence("How many litres are 12 gallons?", [echoed])) is None


def test_a_result_is_not_confirmed_when_a_number_of_the_task_went_into_no_call():
    """Qwen2.5-Coder-0.5B answered "34.5", one desk lamp's price, for what 3 of them cost."""
    task = "How much do 3 desk lamps cost in the shop, in euros?"
    price = Observation("product_price", '{"product": "desk lamp"}', "34.5", True)
    assert StatesAResult()("34.5", Evidence(task, [price])) is None
    times = Observation("multiply", '{"a": 34.5, "b": 3}', "103.5", True)
    assert StatesAResult()("103.5 euros", Evidence(task, [price, times])).passed
    book = Observation("find_book", '{"title": "Night Harbor"}', '{"title": "Night Harbor", "pages": 352}', True)
    wrong = "The Copper Orchard has 62 pages more than Night Harbor."  # Qwen2.5-Coder-1.5B's, verified before
    assert StatesAResult()(wrong, Evidence("How many more pages does 'The Copper Orchard' have than 'Night Harbor'?",
                                           [book])) is None
    copper = Observation("find_book", '{"title": "The Copper Orchard"}', '{"title": "The Copper Orchard", "pages": 412}', True)
    one_book = "The Copper Orchard has 412 more pages than Night Harbor."  # Qwen2.5-Coder-0.5B's: 'Night Harbor' unlooked
    more = "How many more pages does 'The Copper Orchard' have than 'Night Harbor'?"
    assert StatesAResult()(one_book, Evidence(more, [copper])) is None
    assert StatesAResult()(one_book, Evidence(more, [book, copper])) is None  # both looked up, the answer only the last
    assert StatesAResult()("412 and 352 pages", Evidence("How many pages do they have?", [book, copper])).passed
    difference = Observation("subtract", '{"a": 412, "b": 352}', "60", True)
    assert StatesAResult()("60 pages more", Evidence(more, [copper, book, difference])).passed
    spanish = Observation("find_book", '{"title": "El jard\\u00edn de ceniza"}', '{"author": "Lucía Ferrer"}', True)
    assert StatesAResult()("Lucía Ferrer", Evidence("¿Quién escribió «El jardín de ceniza»?", [spanish])).passed
    inventory = Observation("read_file", '{"path": "inventory.csv"}', "fruit,count\napples,12\npears,7\nplums,30", True)
    summed = "The total of apples, pears and plums is 12 + 7 + 30 = 59"  # Qwen2.5-Coder-0.5B's, verified before
    assert StatesAResult()(summed, Evidence("Read inventory.csv. What is the total?", [inventory])) is None
    assert StatesAResult()("12 + 7 + 30 = 49", Evidence("Read inventory.csv. What is the total?",
                                                        [inventory, Observation("add", "{}", "49", True)])).passed
    dates = Observation("days_between", '{"start": "2026-01-01", "end": "2026-12-25"}', "358", True)
    assert StatesAResult()("358 days", Evidence("How many days from 2026-01-01 to 2026-12-25?", [dates])).passed
    assert judge(DEFAULT, "15 years.", seen()).passed and not judge(DEFAULT, "15 years.", seen()).verified


def test_the_small_model_preset_adds_the_grounding_rules():
    task = "What is 4821 * 367? Use the calculator."
    guessed = judge(SMALL_MODEL, "1769307", Evidence(task, tools=[schema("calculator")]))
    assert not guessed.passed and {f.rule for f in guessed.refusals} == {"grounded"}
    assert judge(DEFAULT, "1769307", Evidence(task, tools=[schema("calculator")])).passed
    assert Grounded()("math", Evidence(task)) and not judge([Grounded()], "math", Evidence(task)).passed


def test_the_grounding_rules_confirm_no_answer_a_result_only_touches():
    """Qwen2.5-Coder-0.5B on the plan path: "34.5", one desk lamp's price, for what 3 of them cost, was
    verified by Grounded (no problem found and a call worked); 6 wrong answers of 19 were."""
    task = "How much do 3 desk lamps cost in the shop, in euros?"
    price = Observation("product_price", '{"product": "desk lamp"}', "34.5", True)
    stops_short = judge(SMALL_MODEL, "34.5", Evidence(task, [price]))
    assert stops_short.passed and not stops_short.verified
    times = Observation("multiply", '{"a": 34.5, "b": 3}', "103.5", True)
    assert judge(SMALL_MODEL, "103.5 euros", Evidence(task, [price, times])).verified
    recalled = Evidence("On which day is the demo?", notes=["The demo is on Friday."])
    assert judge(SMALL_MODEL, "Friday", recalled).verified  # held to the notes alone


def test_an_answer_made_of_a_text_result_is_confirmed():
    read = Observation("read_file", '{"path": "notes.txt"}', "The demo is on Friday.", True)
    task = "Read notes.txt. On which day is the demo?"
    assert StatesAResult()("Friday", Evidence(task, [read])).passed
    assert StatesAResult()("The demo is on Monday.", Evidence(task, [read])) is None
    assert StatesAResult()("the", Evidence(task, [read])) is None  # nothing said that the task did not


def test_a_reply_that_loops_is_refused_and_one_that_repeats_a_little_is_not():
    evidence = Evidence("Convert 42 kilometres to miles.")
    for loop in ("42, " * 30, "Shiba-ku-" + "shi-" * 40):  # SmolLM2's answers to a user's own tools
        assert not NotALoop()(loop, evidence).passed
    for fine in ("42 km is 26.1 miles.", "東京", "Ha ha, no: 3 * 3 * 3 = 27."):
        assert NotALoop()(fine, evidence) is None


def test_numbers_from_nowhere_about_a_quoted_name_no_call_took_go_back_once():
    task = "How many pages do 'Night Harbor' and 'Salt and Sparrows' have together?"
    guess = "240 + 220 = 460 pages."  # Qwen2.5-Coder-1.5B, no call made
    finding = GuessedAboutAName()(guess, seen(task=task))
    assert finding and not finding.passed and finding.call_next and finding.rule == "guessed_about_a_name"
    assert "'Night Harbor', 'Salt and Sparrows'" in finding.reason
    assert GuessedAboutAName()(guess, Evidence(task, tools=TOOLS, said=[finding.reason])) is None  # written again: it passes
    # one book looked up, the other guessed: still a guess about the other
    looked_up = Evidence(task, [Observation("find_book", '{"title": "Night Harbor"}', '{"pages": 352}', True, False)],
                         tools=TOOLS)
    left = GuessedAboutAName()("352 + 276 = 628", looked_up)
    assert left.reason != finding.reason and "'Salt and Sparrows'" in left.reason and "'Night Harbor'" not in left.reason
    said = Evidence(task, looked_up.observations, tools=TOOLS, said=[finding.reason])  # fewer names left: once more
    assert GuessedAboutAName()("352 + 276 = 628", said) is not None
    both = Evidence(task, [Observation("find_book", '{"title": "Night Harbor"}', '{"pages": 352}', True, False),
                           Observation("find_book", '{"title": "Salt and Sparrows"}', '{"pages": 276}', True, False)],
                    tools=TOOLS)
    assert GuessedAboutAName()("352 + 276 = 628", both) is None
    assert GuessedAboutAName()(guess, Evidence(task)) is None  # no tools: nothing could have looked it up
