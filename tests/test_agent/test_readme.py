"""The README's agent example runs as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def example(heading: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.model
def test_custom_tool_example_runs(capsys):
    namespace: dict = {}
    exec(compile(example("## An agent with your own tool"), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.events[-1].type == "final"
    calls = [e for e in result.events if e.type == "tool_call"]
    assert calls and calls[0].name == "celsius_to_fahrenheit"
    assert "celsius_to_fahrenheit" in capsys.readouterr().out


def test_backend_example_uses_the_contract():
    code = example("## From Python")
    assert "load_backend" in code and "GenerationRequest" in code
    compile(code, "README.md", "exec")
