"""Schemas generated from signatures and docstrings, checked against expected schemas."""

from enum import Enum
from typing import Literal, Optional

import pytest
from pydantic import BaseModel

from tools import Tool, ToolDefinitionError, tool


class Unit(str, Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class Address(BaseModel):
    street: str
    zip: str | None = None


def params(fn):
    return Tool(fn).parameters_schema()


def test_google_style_docstring_and_basic_types():
    def weather(city: str, days: int = 3, metric: bool = True, threshold: float = 0.5) -> str:
        """Get the forecast.

        Args:
            city: The city name.
            days: How many days ahead.
        """

    t = Tool(weather)
    assert t.description == "Get the forecast."
    assert t.schema() == {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Get the forecast.",
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "city": {"type": "string", "description": "The city name."},
                    "days": {"type": "integer", "default": 3, "description": "How many days ahead."},
                    "metric": {"type": "boolean", "default": True},
                    "threshold": {"type": "number", "default": 0.5},
                },
                "required": ["city"],
            },
        },
    }


def test_numpy_and_rest_docstrings():
    def numpy_style(x: int) -> int:
        """Double a number.

        Parameters
        ----------
        x : int
            The number to double.
        """

    def rest_style(x: int) -> int:
        """Double a number.

        :param x: The number to double.
        """

    for fn in (numpy_style, rest_style):
        t = Tool(fn)
        assert t.description == "Double a number."
        assert t.parameters_schema()["properties"]["x"] == {"type": "integer", "description": "The number to double."}


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (Literal["a", "b"], {"enum": ["a", "b"], "type": "string"}),
        (Unit, {"$ref": "#/$defs/Unit"}),
        (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (list[str], {"type": "array", "items": {"type": "string"}}),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (Address, {"$ref": "#/$defs/Address"}),
        (list[Address], {"type": "array", "items": {"$ref": "#/$defs/Address"}}),
    ],
)
def test_type_table(annotation, expected):
    def fn(value):  # the annotation is set below
        """Takes a value."""

    fn.__annotations__ = {"value": annotation}
    schema = params(fn)
    assert schema["properties"]["value"] == expected
    if "$ref" in str(expected):
        name = str(expected).split("/")[-1].split("'")[0]
        assert name in schema["$defs"]


def test_enum_and_nested_model_definitions():
    def fn(unit: Unit, address: Address):
        """x"""

    schema = params(fn)
    assert schema["$defs"]["Unit"]["enum"] == ["celsius", "fahrenheit"]
    assert schema["$defs"]["Address"]["required"] == ["street"]


def test_decorator_options_and_async():
    @tool(name="lookup", requires_approval=True, timeout=2)
    async def find(key: str) -> str:
        """Look up a key."""
        return key

    assert isinstance(find, Tool) and find.name == "lookup" and find.requires_approval and find.timeout == 2
    assert find.is_async


def test_bad_definitions_are_developer_errors():
    def untyped(x):
        """x"""

    def star(*args: int):
        """x"""

    for fn, message in ((untyped, "needs a type hint"), (star, r"\*args")):
        with pytest.raises(ToolDefinitionError, match=message):
            Tool(fn)
    with pytest.raises(ToolDefinitionError, match="must be letters"):
        Tool(lambda: None, name="bad name!")


def test_validation_converts_types():
    def fn(when: int, address: Address) -> None:
        """x"""

    values = Tool(fn).validate({"when": "5", "address": {"street": "Main"}})
    assert values["when"] == 5 and values["address"] == Address(street="Main")
