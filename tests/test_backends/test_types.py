import pytest
from pydantic import BaseModel, ValidationError

from backends import Constraint, GenerationRequest, Message, SamplingParams, ToolCall


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5), ("max_tokens", 0), ("top_k", -1), ("min_p", 2.0), ("logprobs", 21)],
)
def test_invalid_sampling_names_the_field(field, value):
    with pytest.raises(ValidationError) as info:
        SamplingParams(**{field: value})
    assert info.value.errors()[0]["loc"] == (field,)
    assert field in str(info.value)


def test_sampling_defaults_and_stop_as_string():
    params = SamplingParams(stop="###", temperature=0)
    assert params.stop == ["###"] and params.greedy
    with pytest.raises(ValidationError, match="stop strings must not be empty"):
        SamplingParams(stop=[""])
    with pytest.raises(ValidationError, match="extra"):
        SamplingParams(temprature=0.3)  # a typo is an error, not a silent default


def test_message_roles_and_tool_calls_in_openai_format():
    call = ToolCall.create("call_1", "add", {"a": 1, "b": 2})
    assistant = Message(role="assistant", tool_calls=[call])
    dumped = assistant.model_dump(exclude_none=True)
    assert dumped["tool_calls"][0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
    }
    assert call.name == "add" and call.arguments == '{"a": 1, "b": 2}'
    result = Message(role="tool", content="3", tool_call_id="call_1")
    assert Message.model_validate(result.model_dump()) == result


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"role": "tool", "content": "3"}, "tool_call_id"),
        ({"role": "user", "content": "x", "tool_calls": [ToolCall.create("c", "f", {})]}, "only assistant"),
        ({"role": "user"}, "needs content"),
        ({"role": "robot", "content": "x"}, "role"),
    ],
)
def test_bad_messages(kwargs, needle):
    with pytest.raises(ValidationError, match=needle):
        Message(**kwargs)


def test_request_needs_messages():
    with pytest.raises(ValidationError, match="messages"):
        GenerationRequest(messages=[])


def test_constraint_takes_exactly_one():
    class Answer(BaseModel):
        value: int

    assert Constraint.from_model(Answer).json_schema["properties"]["value"]["type"] == "integer"
    assert Constraint(regex=r"\d+").regex == r"\d+"
    with pytest.raises(ValidationError, match="exactly one"):
        Constraint()
    with pytest.raises(ValidationError, match="exactly one"):
        Constraint(regex="a", grammar="start: 'a'")
    with pytest.raises(ValidationError, match="does not compile"):
        Constraint(regex="(")
