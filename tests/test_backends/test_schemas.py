"""The schema walkers and the one validation-error formatter."""

import re

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backends.schemas import bounded, call_parameters, closed, excluding, explain_validation, not_any_of, other_than
from tests.fixtures.grammar import admits

TOOL = {"type": "function", "function": {"name": "save", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}, "mode": {"type": "string", "enum": ["a", "w"]},
                                     "meta": {"type": "object", "properties": {"tag": {"type": "string"}}}}}}}


def test_objects_are_closed_and_free_strings_bounded_only_when_asked():
    params = call_parameters(TOOL)
    assert params["additionalProperties"] is False and params["properties"]["meta"]["additionalProperties"] is False
    assert "maxLength" not in params["properties"]["path"]
    agent = call_parameters(TOOL, max_string=160)
    assert agent["properties"]["path"]["maxLength"] == 160
    assert agent["properties"]["meta"]["properties"]["tag"]["maxLength"] == 160
    assert "maxLength" not in agent["properties"]["mode"]  # an enum is bounded already
    assert call_parameters({"type": "function", "function": {"name": "ping"}}) == {"type": "object", "properties": {},
                                                                                   "additionalProperties": False}
    assert TOOL["function"]["parameters"].get("additionalProperties") is None  # the caller's schema is left alone
    assert closed([{"type": "object", "properties": {}}]) == [{"type": "object", "properties": {}, "additionalProperties": False}]
    assert bounded({"type": "string", "const": "x"}, 5) == {"type": "string", "const": "x"}
    assert bounded({"type": "string", "maxLength": 500}, 160) == {"type": "string", "maxLength": 160}  # capped too


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: int
    t: float = Field(0.5, le=1)


@pytest.mark.parametrize("subject", ["argument", "option"])
def test_one_formatter_says_what_is_missing_unexpected_or_wrong(subject):
    with pytest.raises(ValidationError) as caught:
        Options.model_validate({"t": 3, "z": 1})
    text = explain_validation(caught.value, subject=subject)
    assert f"{subject} 'a' is required" in text and f"unexpected {subject} 'z'" in text
    assert f"{subject} 't': Input should be less than or equal to 1 (got 3)" in text
    assert explain_validation(caught.value, limit=1).endswith("; and 2 more")


def test_not_any_of_refuses_exactly_the_texts():
    pattern = re.compile(not_any_of(["37 * 91", "(2 + 3) ^ $x", "a\nb"])[1:-1])
    for text in ("37 * 91", "(2 + 3) ^ $x", "a\nb"):
        assert not pattern.fullmatch(text), text
    for text in ("", "37", "37 * 9", "37 * 911", "37 * 92", "(2 + 3)", "a\nbc", "x"):
        assert pattern.fullmatch(text), text


def test_not_any_of_compares_a_long_text_by_its_start():
    long = "x" * 80
    pattern = re.compile(not_any_of([long], compared=60)[1:-1])
    assert not pattern.fullmatch(long) and not pattern.fullmatch("x" * 60) and not pattern.fullmatch("x" * 61)
    assert pattern.fullmatch("x" * 59) and pattern.fullmatch("x" * 59 + "y" * 30)


def test_excluding_a_value_of_each_type():
    assert not admits(excluding({"type": "integer"}, [3]), 3) and admits(excluding({"type": "integer"}, [3]), 4)
    number = excluding({"type": "number", "maximum": 10}, [2.5, 7])
    assert [admits(number, v) for v in (2.5, 7, 2.4, 8, 11)] == [False, False, True, True, False]
    assert excluding({"type": "boolean"}, [True]) == {"type": "boolean", "enum": [False]}
    assert excluding({"type": "boolean"}, [True, False]) is None
    assert excluding({"enum": ["a", "b"]}, ["a"]) == {"enum": ["b"]}
    assert excluding({"type": "object"}, [{}]) is None  # not expressible: the caller decides
    text = excluding({"type": "string", "maxLength": 10}, ["README.md"])
    assert not admits(text, "README.md") and admits(text, "notes.txt") and not admits(text, "x" * 11)


def test_other_than_refuses_the_calls_already_made():
    tool = {"function": {"name": "read", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}, "lines": {"type": "integer"}}, "required": ["path"]}}}
    params = call_parameters(tool)
    made = [{"path": "a.txt", "lines": 3}]
    schema = other_than(params, made)
    assert not admits(schema, {"path": "a.txt", "lines": 3})
    assert admits(schema, {"path": "b.txt", "lines": 3}) and admits(schema, {"path": "a.txt", "lines": 4})
    assert admits(schema, {"path": "a.txt"})  # leaving an argument out is a change too
    assert other_than(params, []) is params
    no_arguments = call_parameters({"function": {"name": "now"}})
    assert other_than(no_arguments, [{}]) is None  # the one call it has is made: the tool is used up
