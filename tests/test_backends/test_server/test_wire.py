import pytest
from pydantic import ValidationError

from backends.server.wire import ChatCompletionRequest


def _wire(**fields):
    return ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


def test_defaults_follow_the_openai_api():
    request = _wire().to_request(default_max_tokens=100)
    assert request.sampling.temperature == 1.0 and request.sampling.max_tokens == 100
    assert request.tools is None and request.tool_choice is None and request.constraint is None


def test_fields_map_onto_our_request():
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    request = _wire(
        messages=[{"role": "developer", "content": "be brief"},
                  {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                  {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                        "function": {"name": "add", "arguments": "{\"a\": 1}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "1"}],
        temperature=0, top_p=0.5, max_completion_tokens=7, stop="END", seed=3, logprobs=True, top_logprobs=4,
        tools=[tool], tool_choice={"type": "function", "function": {"name": "add"}}, parallel_tool_calls=False,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        logit_bias={"42": -100}, top_k=5,
    ).to_request(default_max_tokens=100)
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool"]
    assert request.messages[1].content == "ab" and request.messages[2].tool_calls[0].name == "add"
    s = request.sampling
    assert (s.temperature, s.top_p, s.max_tokens, s.stop, s.seed, s.logprobs, s.top_k) == (0, 0.5, 7, ["END"], 3, 4, 5)
    assert s.logit_bias == {42: -100}
    assert request.tool_choice == "add" and request.parallel_tool_calls is False
    assert request.constraint.json_schema == {"type": "object"}


def test_tools_default_to_auto():
    tool = {"type": "function", "function": {"name": "add"}}
    assert _wire(tools=[tool]).to_request(10).tool_choice == "auto"


@pytest.mark.parametrize("fields, problem", [
    ({"n": 17}, "n"),
    ({"temperature": 3}, "temperature"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"frobnicate": True}, "frobnicate"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "name"),
])
def test_malformed_requests_fail_validation(fields, problem):
    with pytest.raises(ValidationError, match=problem):
        _wire(**fields)


@pytest.mark.parametrize("fields, problem", [
    ({"top_logprobs": 3}, "needs logprobs"),
    ({"tool_choice": "required"}, "needs tools"),
    ({"response_format": {"type": "json_schema"}}, "json_schema.schema"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "only text"),
    ({"logit_bias": {"x": 1}}, "invalid literal"),
])
def test_requests_whose_parts_do_not_fit_fail_to_convert(fields, problem):
    with pytest.raises(ValueError, match=problem):
        _wire(**fields).to_request(10)
