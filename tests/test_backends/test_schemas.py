"""The schema walkers and the one validation-error formatter."""

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backends.schemas import bounded, call_parameters, closed, explain_validation

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
