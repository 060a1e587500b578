import math
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures.grammar import admits
from tools import SeenNumbers, ToolRegistry, approve_all
from tools.builtins.calculator import CalculatorError, calculate


@pytest.mark.parametrize(
    ("expression", "value"),
    [("2 * (3 + 4) ** 2", 98), ("7 // 2 + 7 % 2", 4), ("-3 ** 2", -9), ("sqrt(16) + log10(1000)", 7.0),
     ("round(pi, 3)", 3.142), ("max(1, 2, 3) - min(4, 5)", -1), ("2 ** 0.5", math.sqrt(2)), ("1e3 / 8", 125.0)],
)
def test_calculator_arithmetic(expression, value):
    assert calculate(expression) == pytest.approx(value)


ARITHMETIC = ["2 * (3 + 4) ** 2", "7 // 2 + 7 % 2", "-3 ** 2", "sqrt(16) + log10(1000)", "round(pi, 3)",
              "max(1, 2, 3) - min(4, 5)", "2 ** 0.5", "1e3 / 8", "(300 + 45) * 2", "-(3 + 4)", "sqrt(169)"]


def test_the_calculator_schema_admits_arithmetic_and_nothing_else(tmp_path):
    """The pattern a constrained model writes its expression by (seen in traces before it: "1.0.0.0",
    "total.json", "1.0, 2.0, 3.0", ".999 - 123", and bare numbers "1000", "5", "8" one call each)."""
    schema = ToolRegistry.with_builtins(tmp_path).get("calculator").parameters_schema()
    for expression in ARITHMETIC:
        assert admits(schema, {"expression": expression}), expression
    for junk in ["1.0.0.0", "total.json", "1.0, 2.0", ".999 - 123", "sqrt 169", "x + 1", "2 +", "__import__('os')",
                 "1000", "(42)"]:  # a bare number computes nothing
        assert not admits(schema, {"expression": junk}), junk
    # validation stays calculate()'s: what the pattern is too strict for still runs when a model writes it
    assert ToolRegistry.with_builtins(tmp_path).call("calculator", {"expression": "sqrt(abs(-16))"}).output == "4"


def test_the_calculator_schema_narrowed_to_seen_numbers(tmp_path):
    calculator = ToolRegistry.with_builtins(tmp_path).get("calculator")
    schema = calculator.parameters_schema(SeenNumbers(("17", "25", "3", "42")))
    for expression in ["17 + 25", "(17 + 25) * 3", "42 * 3", "sqrt(42)", "-17 * pi"]:
        assert admits(schema, {"expression": expression}), expression
    for invented in ["17 + 26", "1234567890", "17 + 2", "4 * 3", "17.25"]:
        assert not admits(schema, {"expression": invented}), invented
    # the next step of a calculation under way: its last result and the unused numbers, each once, by the operators left
    step = calculator.parameters_schema(SeenNumbers(("345", "2"), each_once=True, operators=("*",)))
    assert admits(step, {"expression": "345 * 2"}) and admits(step, {"expression": "2*345"})
    for wrong in ["345 - 345", "345 * 345", "345 + 2", "345", "345 * 2 * 2"]:
        assert not admits(step, {"expression": wrong}), wrong
    assert calculator.parameters_schema(SeenNumbers(())) == calculator.parameters_schema()  # nothing seen: syntax only


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("__import__('os').system('id')", "not a call to something"),
        ("().__class__", "not Attribute"),
        ("open('/etc/passwd')", "call to something other than"),
        ("x + 1", "name 'x'"),
        ("9 ** 9 ** 9", "exponents above 1000"),
        ("10 ** 999 * 10 ** 999 * 10 ** 999 * 10 ** 999 * 10 ** 999", "more than 4000 digits"),
        ("1 / 0", "division by zero"),
        ("1" * 600, "longer than 500"),
        ("exp(1000)", "too large"),
        ("[1, 2]", "not List"),
        ("lambda: 1", "not Lambda"),
        ("2 +", "not an arithmetic expression"),
        ("(" * 240 + ")" * 240, "not an arithmetic expression"),
        ("sqrt(-1)", "math domain error"),
    ],
)
def test_calculator_refuses(expression, needle):
    with pytest.raises(CalculatorError, match=needle.replace("(", r"\(")):
        calculate(expression)


safe_alphabet = st.sampled_from(list("0123456789+-*/%().e ")
                                + ["**", "//", "sqrt(", "pi", "__", "import", "os", "'", "[", ".", "lambda", ":"])


@settings(max_examples=400, deadline=None)
@given(st.lists(safe_alphabet, max_size=60).map("".join))
def test_calculator_only_does_arithmetic_and_never_hangs(expression):
    start = time.perf_counter()
    try:
        result = calculate(expression)
    except CalculatorError:
        pass
    else:
        assert isinstance(result, (int, float))
    assert time.perf_counter() - start < 1.0


def numbers_and_ops():
    leaf = st.integers(-10**6, 10**6).map(str) | st.floats(-1e6, 1e6, allow_nan=False).map(repr)
    return st.recursive(leaf, lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**", "//", "%"]), inner)
                        .map(lambda t: f"({t[0]} {t[1]} {t[2]})"), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(numbers_and_ops())
def test_calculator_on_random_arithmetic_is_bounded(expression):
    start = time.perf_counter()
    try:
        calculate(expression)
    except CalculatorError:
        pass
    assert time.perf_counter() - start < 1.0


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("def main():\n    return 42\n")
    (root / "notes.md").write_text("# Notes\nThe answer is 42.\n")
    (root / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "secret.txt").write_text("top secret")
    os.symlink(tmp_path / "secret.txt", root / "link_out.txt")
    os.symlink(root / "notes.md", root / "link_in.md")
    return root


def test_file_tools_inside_the_workspace(workspace):
    registry = ToolRegistry.with_builtins(workspace, approver=approve_all)
    listing = registry.call("list_files", "{}").output
    assert "src/" in listing and "notes.md" in listing and "link_out.txt" not in listing
    assert registry.call("read_file", {"path": "src/main.py"}).output.startswith("def main")
    assert registry.call("read_file", {"path": "link_in.md"}).output.startswith("# Notes")
    found = registry.call("search_files", {"pattern": r"42"}).output
    assert "notes.md:2:" in found and "src/main.py:2:" in found and "blob.bin" not in found


def test_path_arguments_offer_every_path_in_a_small_workspace_and_none_in_a_big_one(workspace):
    registry = ToolRegistry.with_builtins(workspace, approver=approve_all)

    def choices(tool):
        return registry.get(tool).parameters_schema()["properties"]["path"].get("enum")

    assert choices("read_file") == ["blob.bin", "link_in.md", "notes.md", "src/main.py"]  # not link_out.txt
    assert choices("list_files") == choices("search_files") == [".", "src"]
    assert choices("write_file") is None  # a new file's name is free
    (workspace / "src" / "util.py").write_text("")
    assert "src/util.py" in choices("read_file")  # the schema follows the workspace
    for i in range(64):
        (workspace / f"f{i}.txt").write_text("")
    assert choices("read_file") is None and choices("list_files") is None
    assert registry.call("read_file", {"path": "f3.txt"}).ok
    assert registry.call("write_file", {"path": "out/new.txt", "content": "hello"}).ok
    assert (workspace / "out" / "new.txt").read_text() == "hello"


@pytest.mark.parametrize(
    ("tool", "arguments", "needle"),
    [
        ("read_file", {"path": "../secret.txt"}, "steps outside"),
        ("read_file", {"path": "/etc/passwd"}, "is absolute"),
        ("read_file", {"path": "link_out.txt"}, "outside the workspace (through a symlink)"),
        ("read_file", {"path": "notes\x00.md"}, "NUL"),
        ("read_file", {"path": "~/x"}, "is absolute"),
        ("read_file", {"path": "blob.bin"}, "binary file"),
        ("read_file", {"path": "missing.txt"}, "does not exist"),
        ("list_files", {"path": "src/../.."}, "steps outside"),
        ("search_files", {"pattern": "(unclosed"}, "invalid regular expression"),
        ("write_file", {"path": "../escape.txt", "content": "x"}, "steps outside"),
        ("write_file", {"path": "link_out.txt", "content": "x"}, "through a symlink"),
        ("write_file", {"path": "big.txt", "content": "x" * 2_000_000}, "the limit is"),
    ],
)
def test_path_escapes_and_limits_are_refused(workspace, tool, arguments, needle):
    registry = ToolRegistry.with_builtins(workspace, approver=approve_all)
    result = registry.call(tool, arguments)
    assert not result.ok and needle in result.error
    assert (workspace.parent / "secret.txt").read_text() == "top secret"
    assert not (workspace.parent / "escape.txt").exists()


def test_catastrophic_regex_is_stopped(workspace):
    (workspace / "evil.txt").write_text("a" * 60 + "!")
    registry = ToolRegistry.with_builtins(workspace)
    start = time.perf_counter()
    result = registry.call("search_files", {"pattern": r"(a|aa)+$"})
    assert time.perf_counter() - start < 10
    assert not result.ok and "too slow" in result.error


def test_python_tool(workspace):
    registry = ToolRegistry.with_builtins(workspace, approver=approve_all)
    assert registry.call("python", {"code": "print(6 * 7)"}).output.strip() == "42"
    assert "ZeroDivisionError" in registry.call("python", {"code": "1/0"}).output
    assert "exit code 1" in registry.call("python", {"code": "1/0"}).output
    assert "MemoryError" in registry.call("python", {"code": "x = bytearray(2 * 1024**3)"}).output
    assert "was stopped" in registry.call("python", {"code": "while True: pass"}).output
    assert not ToolRegistry.with_builtins(workspace).call("python", {"code": "print(1)"}).ok  # headless: denied


def test_clock_and_memory_tools(workspace):
    registry = ToolRegistry.with_builtins(workspace)
    assert registry.call("current_time", {"timezone": "Europe/Paris"}).output[-6:] in ("+01:00", "+02:00")
    assert "unknown time zone" in registry.call("current_time", {"timezone": "Nowhere/Else"}).error
    assert "no memory is attached" in registry.call("recall", {"query": "x"}).error

    class FakeMemory:
        notes: list = []

        def remember(self, text):
            self.notes.append(text)

        def search(self, query, k=5):
            from types import SimpleNamespace

            return [SimpleNamespace(chunk_id=1, source="note", text=n) for n in self.notes if query in n]

    registry = ToolRegistry.with_builtins(workspace, memory=FakeMemory())
    assert registry.call("remember", {"text": "the cat is grey"}).ok
    assert registry.call("recall", {"query": "cat"}).output == "[1] (note) the cat is grey"


def test_workspace_must_exist(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        ToolRegistry.with_builtins(tmp_path / "missing")
