import json

import pytest

from backends import BackendError, Constraint, GenerationRequest, Message, SamplingParams, TokenEvent, ToolCall
from backends.base import GenerationError
from backends.local.chat_template import CHATML
from backends.local.constraints import GrammarMask
from backends.local.tokenizer import LocalTokenizer
from backends.local.tool_calls import call_grammar, prepare, with_parsed_calls
from backends.local.tool_formats import Hermes
from tests.fixtures.tiny_models import tiny_tokenizer

TOKENIZER = LocalTokenizer(tiny_tokenizer(), 0, [2], False)  # no tool tags in its vocabulary: they are text

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                          "required": ["city"]}}}
ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers",
       "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                      "required": ["a", "b"]}}}


def _request(choice, question="What's the weather in Paris?", parallel=False, **extra):
    return GenerationRequest(messages=[Message(role="user", content=question)], tools=[WEATHER, ADD],
                             tool_choice=choice, parallel_tool_calls=parallel,
                             sampling=SamplingParams(temperature=0, max_tokens=60), **extra)


def test_parse_calls_reads_complete_blocks_only():
    text = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n<tool_call>\n{"name": "ad'
    calls = Hermes().parse(text)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("add", {"a": 1, "b": 2})]
    assert calls[0].id.startswith("call_")
    assert Hermes().parse("no calls here") == []
    assert Hermes().parse("<tool_call>{not json}</tool_call>") == []


def _events(texts, finish):
    for i, text in enumerate(texts):
        yield TokenEvent(text=text, token_id=i, finish_reason=finish if i == len(texts) - 1 else None)


def test_with_parsed_calls_holds_call_text_and_attaches_calls():
    pieces = ["<tool", "_call>\n", '{"name": "add", "arguments": {"a": 1, "b": 2}}', "\n</tool_call>", ""]
    out = list(with_parsed_calls(_events(pieces, "eos"), Hermes()))
    assert all(e.text == "" for e in out)
    assert out[-1].finish_reason == "tool_calls" and out[-1].tool_calls[0].name == "add"


def test_with_parsed_calls_passes_plain_text_and_releases_a_cut_off_call():
    plain = list(with_parsed_calls(_events(["Hello", " there", ""], "eos"), Hermes()))
    assert "".join(e.text for e in plain) == "Hello there" and plain[-1].finish_reason == "eos"
    cut = list(with_parsed_calls(_events(["<tool_call>\n", '{"name": "a'], "length"), Hermes()))
    assert "".join(e.text for e in cut) == '<tool_call>\n{"name": "a' and cut[-1].finish_reason == "length"


# Qwen2.5-Coder-0.5B-Instruct's own replies to tool_choice="auto" (greedy, through this engine): no <tool_call> tag.
REAL_UNTAGGED = [
    ('```json\n{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Hanoi"\n  }\n}\n```',
     [("get_weather", {"city": "Hanoi"})]),
    ('{"name": "days_between", "arguments": {"start": "2024-01-01", "end": "2024-03-01"}}',
     [("days_between", {"start": "2024-01-01", "end": "2024-03-01"})]),
    ('{"name": "add", "arguments": {"a": 1, "b": 2}}\n{"name": "add", "arguments": {"a": 3, "b": 4}}',
     [("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})]),
    ('[{"name": "get_weather", "arguments": {"city": "Oslo"}}]', [("get_weather", {"city": "Oslo"})]),
]
NAMES = ["get_weather", "days_between", "add"]


@pytest.mark.parametrize("text, expected", REAL_UNTAGGED)
def test_calls_written_without_their_tag_are_calls(text, expected):
    pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
    out = list(with_parsed_calls(_events(pieces, "eos"), Hermes(), NAMES))
    assert all(e.text == "" for e in out)
    assert out[-1].finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in out[-1].tool_calls] == expected


@pytest.mark.parametrize("text", [
    '{"name": "Ana", "arguments": {"x": 1}}',  # not an offered tool: a JSON answer
    '{"city": "Hanoi", "temperature": 31}',  # JSON, no call
    'Here is the call: {"name": "get_weather", "arguments": {"city": "Hanoi"}}',  # prose around it: an answer
    '```json\n{"name": "get_weather", "arguments": {"city": "Hanoi"}}\n```\nThen I will answer.',
    '{"name": "get_weather", "arguments": {"city": "Ha',  # cut off
    "[1, 2, 3]",
])
def test_text_that_is_not_only_calls_of_offered_tools_stays_text(text):
    out = list(with_parsed_calls(_events([text[:5], text[5:]], "eos"), Hermes(), NAMES))
    assert "".join(e.text for e in out) == text and not out[-1].tool_calls and out[-1].finish_reason == "eos"


# Qwen2.5-Coder-1.5B-Instruct's own reply to tool_choice="auto" (greedy, through this engine).
SAID_THEN_CALLED = ("To find the price of a toaster from the shop in US dollars, you can use the `product_price` "
                    "function. Here's how you can do it:\n\n")
FENCED_CALL = '```json\n{\n  "name": "product_price",\n  "arguments": {\n    "product": "Toaster"\n  }\n}\n```'


def test_words_then_a_fenced_call_are_a_call_and_the_fence_is_not_streamed_as_text():
    text = SAID_THEN_CALLED + FENCED_CALL
    pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
    out = list(with_parsed_calls(_events(pieces, "eos"), Hermes(), [*NAMES, "product_price"]))
    assert "".join(e.text for e in out) == SAID_THEN_CALLED
    assert out[-1].finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in out[-1].tool_calls] == [("product_price", {"product": "Toaster"})]


@pytest.mark.parametrize("fence", ["```python\nprint(1)\n```", FENCED_CALL + "\nThen I will answer.",
                                   '```json\n{"city": "Hanoi"}\n```', FENCED_CALL[:30]])
def test_words_then_a_fence_that_is_not_calls_stay_text(fence):
    text = SAID_THEN_CALLED + fence
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
    out = list(with_parsed_calls(_events(pieces, "eos"), Hermes(), [*NAMES, "product_price"]))
    assert "".join(e.text for e in out) == text and not out[-1].tool_calls and out[-1].finish_reason == "eos"


def test_untagged_calls_are_read_only_when_tools_are_named():
    text = '{"name": "add", "arguments": {"a": 1, "b": 2}}'
    assert "".join(e.text for e in with_parsed_calls(_events([text], "eos"), Hermes())) == text


def test_prepare_writes_tools_into_a_template_that_knows_none():
    history = [Message(role="user", content="add 1 and 2"),
               Message(role="assistant", tool_calls=[ToolCall.create("c1", "add", {"a": 1, "b": 2})]),
               Message(role="tool", tool_call_id="c1", content="3")]
    request = GenerationRequest(messages=history, tools=[ADD], tool_choice="auto")
    prepared, fmt = prepare(request, CHATML, TOKENIZER)
    assert isinstance(fmt, Hermes) and prepared.constraint is not None and prepared.constraint.grammar
    roles = [m.role for m in prepared.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert '"name": "add"' in prepared.messages[0].content
    assert '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>' in prepared.messages[2].content
    assert prepared.messages[3].content == "<tool_response>\n3\n</tool_response>"
    native, _ = prepare(request, "{% if tools %}<tool_call>{% endif %}", TOKENIZER)
    assert native.messages == request.messages


def test_prepare_leaves_requests_without_tool_choice_alone_and_refuses_regex_with_tools():
    plain = GenerationRequest(messages=[Message(role="user", content="hi")])
    assert prepare(plain, CHATML, TOKENIZER) == (plain, None)
    with pytest.raises(BackendError, match="not a grammar"):
        prepare(_request("auto", constraint=Constraint(grammar='start: "a"')), CHATML, TOKENIZER)
    with_regex, _ = prepare(_request("auto", constraint=Constraint(regex="[A-Z][a-z/]+")), CHATML, TOKENIZER)
    assert "answer: /[A-Z][a-z\\/]+/" in with_regex.constraint.grammar


def test_tool_choice_must_name_an_offered_tool():
    with pytest.raises(ValueError, match="not among the tools"):
        _request("send_email")
    with pytest.raises(ValueError, match="needs tools"):
        GenerationRequest(messages=[Message(role="user", content="x")], tool_choice="required")


def test_named_choice_grammar_offers_only_that_tool():
    grammar = call_grammar(Hermes(), [WEATHER, ADD], "add", parallel=False)
    assert '"const": "add"' in grammar and "get_weather" not in grammar and "start: calls" in grammar


def test_callable_tools_narrow_the_calls_the_grammar_allows():
    """The template shows `tools`; the grammar only `callable_tools` (the agent's repeated-call exclusion)."""
    oslo = {"type": "function", "function": {**WEATHER["function"], "parameters": {
        "type": "object", "properties": {"city": {"enum": ["Oslo"]}}, "required": ["city"]}}}
    prepared, _ = prepare(_request("required", callable_tools=[oslo]), CHATML, TOKENIZER)
    grammar = prepared.constraint.grammar
    assert "Oslo" in grammar and '"const": "add"' not in grammar
    assert '{"name": "add"' in prepared.messages[0].content  # the template still shows every tool
    answer_only, fmt = prepare(_request("auto", callable_tools=[]), CHATML, TOKENIZER)  # nothing left: it answers
    assert fmt is None and "calls" not in answer_only.constraint.grammar
    for choice in ("required", "add"):
        with pytest.raises(BackendError, match="leaves only"):
            prepare(_request(choice, callable_tools=[oslo] if choice == "add" else []), CHATML, TOKENIZER)
    with pytest.raises(ValueError, match="not among the tools"):
        _request("auto", callable_tools=[{"type": "function", "function": {"name": "send_email"}}])


@pytest.mark.model
@pytest.mark.parametrize("choice", ["required", "get_weather", "add"])
def test_forced_calls_are_valid_calls_of_offered_tools(smollm2, choice):
    for question in ("What's the weather in Paris?", "Write a poem about the sea."):
        generation = smollm2.generate(_request(choice, question))
        assert generation.finish_reason == "tool_calls" and generation.text == ""
        (call,) = generation.tool_calls
        assert call.name in ({"get_weather", "add"} if choice == "required" else {choice})
        args = json.loads(call.arguments)
        assert set(args) == ({"city"} if call.name == "get_weather" else {"a", "b"})


@pytest.mark.model
def test_auto_may_answer_in_text(smollm2):
    generation = smollm2.generate(_request("auto", "Say hello."))
    assert generation.finish_reason == "eos" and generation.text and not generation.tool_calls


def test_a_reply_ends_at_a_repeated_call():
    block = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    other = '<tool_call>\n{"name": "add", "arguments": {"a": 3, "b": 4}}\n</tool_call>'
    pieces = [block, "\n", other, "\n", block, "\n", "<tool_call>"]
    out = list(with_parsed_calls(_events(pieces, "length"), Hermes()))
    assert out[-1].finish_reason == "tool_calls" and len(out) == 5
    assert [json.loads(c.arguments) for c in out[-1].tool_calls] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]


@pytest.mark.parametrize("text", [
    '```json\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n{"name": "add", "arguments": {"a": 3, "b": 4}}\n{"na',
    '{"name": "add", "arguments": {"a": 1, "b": 2}}\n{"name": "add", "arguments": {"a": 3, "b": 4}}\n{"name": "add", "a',
])
def test_untagged_calls_cut_off_by_max_tokens_keep_the_whole_ones(text):
    out = list(with_parsed_calls(_events([text[:9], text[9:]], "length"), Hermes(), NAMES))
    assert out[-1].finish_reason == "tool_calls"
    assert [json.loads(c.arguments) for c in out[-1].tool_calls] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]


def test_an_untagged_reply_ends_at_a_repeated_call():
    call = '{"name": "add", "arguments": {"a": 1, "b": 2}}'
    pieces = [call, "\n", call, "\n", "{"]
    out = list(with_parsed_calls(_events(pieces, "length"), Hermes(), NAMES))
    assert out[-1].finish_reason == "tool_calls" and len(out) == 3 and len(out[-1].tool_calls) == 1


@pytest.mark.parametrize("choice", ["required", "add"])
@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>',
    '{"name": "add", "arguments": {"a": 1, "b": 2}}',
    '```json\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```',
])
def test_a_forced_call_may_be_written_with_its_tag_or_without(choice, text):
    """Qwen2.5-Coder-0.5B opens its calls with ```json: forced into <tool_call> instead, it went on
    calling (a triangle's area in four units); let its own way, it stops after the one call."""
    mask = GrammarMask(Constraint(grammar=call_grammar(Hermes(), [WEATHER, ADD], choice, True)), TOKENIZER, 320)
    for token in TOKENIZER.encode(text):
        mask.consume(token)
    assert mask.matcher.is_accepting()
    assert [c.name for c in with_parsed_calls(_events([text], "eos"), Hermes(), NAMES).__next__().tool_calls] == ["add"]


@pytest.mark.model
def test_parallel_calls_stop_at_a_repeat(smollm2):
    generation = smollm2.generate(_request("required", parallel=True))
    assert generation.finish_reason == "tool_calls" and generation.tool_calls
    keys = [(c.name, c.arguments) for c in generation.tool_calls]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("text, is_call", [
    ('{"name": "add", "arguments": {"a": 1, "b": 2}}', True),
    ('```json\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```', True),
    ("```python\nprint(1)\n```", False),
    ("Ciudad de México: 22 °C, €3", False),
])
def test_under_auto_a_reply_that_opens_like_a_call_is_held_to_the_schemas(text, is_call):
    """A text answer cannot open with '{', '[' or a ```json fence, so an untagged call cannot slip past
    the schemas as text (Qwen2.5-Coder-0.5B's `{"name": "find_book", "arguments": {... "pages": 200}}`)."""
    grammar = call_grammar(Hermes(), [WEATHER, ADD], "auto", False)
    mask = GrammarMask(Constraint(grammar=grammar), TOKENIZER, 320)
    for token in TOKENIZER.encode(text):
        mask.consume(token)
    assert mask.matcher.is_accepting()
    out = list(with_parsed_calls(_events([text], "eos"), Hermes(), NAMES))
    assert bool(out[-1].tool_calls) == is_call
    invented = '{"name": "add", "arguments": {"a": 1, "b": 2, "c": 3}}'  # a parameter add does not have
    mask = GrammarMask(Constraint(grammar=grammar), TOKENIZER, 320)
    with pytest.raises(GenerationError):
        for token in TOKENIZER.encode(invented):
            mask.consume(token)
