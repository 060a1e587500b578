import math

import pytest

from backends import Backend, GenerationRequest, Message, SamplingParams, load_backend
from backends.scripted import ScriptedBackend, ScriptedExhausted


def request(text="hi", **sampling):
    return GenerationRequest(messages=[Message(role="user", content=text)], sampling=SamplingParams(**sampling))


def test_streams_scripted_replies_in_order_then_fails_clearly():
    backend = load_backend("scripted", replies=["First reply.", "Second!"])
    assert isinstance(backend, Backend)
    events = list(backend.stream(request()))
    assert [e.text for e in events] == ["First", " reply", ".", ""]
    assert events[-1].finish_reason == "eos" and events[-1].token_id == backend.tokenizer.eos_token_id
    assert backend.generate(request()).text == "Second!"
    with pytest.raises(ScriptedExhausted, match="no reply left"):
        backend.generate(request())
    assert len(backend.requests) == 3


def test_reply_function_sees_the_request():
    backend = ScriptedBackend(reply_fn=lambda req: req.messages[-1].content[::-1])
    assert backend.generate(request("abc")).text == "cba"


def test_default_echoes():
    assert ScriptedBackend().generate(request("ping")).text == "You said: ping"


def test_max_tokens_stop_strings_and_usage():
    backend = ScriptedBackend(replies=["one two three four", "alpha beta</s> gamma"])
    g = backend.generate(request(max_tokens=2))
    assert (g.text, g.finish_reason, g.usage.completion_tokens) == ("one two", "length", 2)
    assert g.usage.prompt_tokens == len(backend.tokenizer.encode(backend.render(request().messages)))
    g = backend.generate(request(stop=["</s>"]))
    assert (g.text, g.finish_reason) == ("alpha beta", "stop")


def test_logprobs_are_well_formed():
    events = list(ScriptedBackend(replies=["Hello world"]).stream(request(logprobs=4)))
    for event in events:
        assert len(event.top_logprobs) == 4
        probs = [math.exp(lp) for _, lp in event.top_logprobs]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0
        assert event.top_logprobs[0] == (event.token, event.logprob)
    assert all(e.top_logprobs == [] for e in ScriptedBackend(replies=["x"]).stream(request()))


def test_tokenizer_round_trips():
    tok = ScriptedBackend().tokenizer
    text = "Hello, wörld!  \n code_x = 1"
    assert tok.decode(tok.encode(text)) == text
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([10_000])


def test_context_window_is_enforced():
    backend = ScriptedBackend(context_window=5)
    with pytest.raises(Exception, match="context window is 5"):
        backend.stream(request("a long prompt that does not fit"))
