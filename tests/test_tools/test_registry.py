"""Every failure mode returns a ToolResult with a useful error; none raises."""

import asyncio
import sys
import textwrap
import time

import pytest

from tools import ApprovalRequest, ToolRegistry, approve_all, tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def explode(message: str) -> str:
    """Always raises."""
    raise RuntimeError(message)


@tool(timeout=0.3)
def slow(seconds: float) -> str:
    """Sleeps."""
    time.sleep(seconds)
    return "done"


@tool
async def async_add(a: int, b: int) -> int:
    """Add, asynchronously."""
    await asyncio.sleep(0)
    return a + b


@tool
def big() -> str:
    """A huge output."""
    return "x" * 100_000


@tool(requires_approval=True)
def launch(target: str) -> str:
    """Needs approval."""
    return f"launched {target}"


@pytest.fixture
def registry():
    return ToolRegistry([add, explode, slow, async_add, big, launch])


def test_a_good_call(registry):
    result = registry.call("add", '{"a": 2, "b": 3}')
    assert result.ok and result.output == "5" and result.error is None and result.duration >= 0
    assert registry.call("async_add", {"a": 1, "b": 1}).output == "2"


@pytest.mark.parametrize(
    ("name", "arguments", "needle"),
    [
        ("subtract", "{}", "unknown tool 'subtract'; the tools are: add, explode, slow"),
        ("add", '{"a": 1, "b": ', "arguments are not valid JSON"),
        ("add", "[1, 2]", "must be a JSON object, not list"),
        ("add", '{"a": 1}', "argument 'b' is required"),
        ("add", '{"a": "one", "b": 2}', "argument 'a': Input should be a valid integer"),
        ("add", '{"a": 1, "b": 2, "c": 3}', "unexpected argument 'c'"),
        ("explode", '{"message": "boom"}', "RuntimeError: boom"),
        ("slow", '{"seconds": 5}', "did not finish within 0.3 s"),
        ("launch", '{"target": "moon"}', "did not approve"),
    ],
)
def test_failures_come_back_as_results(registry, name, arguments, needle):
    result = registry.call(name, arguments)
    assert not result.ok and result.output == ""
    assert needle in result.error and "(at " not in result.error  # what went wrong, not where in the code


def test_timeout_returns_promptly(registry):
    start = time.perf_counter()
    registry.call("slow", {"seconds": 3})
    assert time.perf_counter() - start < 1.5


def test_output_is_capped(registry):
    result = registry.call("big", "{}")
    assert result.ok and len(result.output) < 16_100 and "[truncated 84000 characters]" in result.output


def test_approval(registry):
    seen = []

    def approver(request: ApprovalRequest) -> bool:
        seen.append(request)
        return request.arguments["target"] == "moon"

    registry.approver = approver
    assert registry.call("launch", {"target": "moon"}).output == "launched moon"
    assert not registry.call("launch", {"target": "mars"}).ok
    assert seen[0] == ApprovalRequest(name="launch", arguments={"target": "moon"})
    registry.approver = lambda request: 1 / 0  # a broken approver denies
    assert "did not approve" in registry.call("launch", {"target": "moon"}).error
    registry.approver = approve_all
    assert registry.call("launch", {"target": "x"}).ok


def test_registration_and_schemas(registry):
    assert registry.names()[:2] == ["add", "explode"] and "add" in registry and len(registry) == 6
    assert [s["function"]["name"] for s in registry.schemas()] == registry.names()
    with pytest.raises(ValueError, match="already registered"):
        registry.register(add)
    plain = ToolRegistry([lambda_free_function])
    assert plain.get("lambda_free_function").description == "A plain function becomes a tool."


def lambda_free_function(x: int) -> int:
    """A plain function becomes a tool."""
    return x


def test_acall_from_async_code(registry):
    result = asyncio.run(registry.acall("async_add", {"a": 2, "b": 2}))
    assert result.output == "4"


def test_entry_point_tools(tmp_path, monkeypatch):
    (tmp_path / "tiny_tools.py").write_text(textwrap.dedent('''
        from tools import tool

        @tool
        def greet(name: str) -> str:
            """Say hello."""
            return f"hello {name}"

        def shout(text: str) -> str:
            """Upper-case."""
            return text.upper()

        bundle = [greet, shout]
    '''))
    dist = tmp_path / "tiny_tools-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-tools\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tokentrail.tools]\nbundle = tiny_tools:bundle\nbroken = tiny_tools:missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tiny_tools", raising=False)
    registry = ToolRegistry()
    problems = registry.load_entry_points()
    assert registry.call("greet", {"name": "ada"}).output == "hello ada"
    assert registry.call("shout", {"text": "hi"}).output == "HI"
    assert len(problems) == 1 and "'broken'" in problems[0]
