"""Tool calls in the formats open models use, on tiny models whose tags are single tokens."""

import json

import numpy as np
import pytest
import torch

from backends import BackendError, GenerationRequest, Message, SamplingParams, ToolCall
from backends.local.chat_template import CHATML, render_chat
from backends.local.constraints import GrammarMask
from backends.local.tool_calls import call_grammar, spelling
from backends.local.tool_formats import Hermes, Llama3, Mistral, native_format, untagged_calls
from backends.types import Constraint
from tests.fixtures.chat_families import FAMILIES, template

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "required": ["city", "days"], "properties": {
        "city": {"type": "string", "enum": ["Paris", "Oslo", "Lima"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}}
CONVERT = {"type": "function", "function": {
    "name": "convert", "description": "Convert an amount of money",
    "parameters": {"type": "object", "required": ["amount", "to"], "properties": {
        "amount": {"type": "integer", "minimum": 0, "maximum": 100}, "to": {"type": "string", "enum": ["EUR", "USD"]}}}}}
TOOLS = [WEATHER, CONVERT]
FORMAT = {"qwen2.5": Hermes, "llama3.1": Llama3, "mistral": Mistral}


def valid(call: ToolCall) -> bool:
    """A call of one of TOOLS with arguments its schema allows (ours, or the openai SDK's)."""
    name, args = call.function.name, json.loads(call.function.arguments)
    if name == "get_weather":
        return args["city"] in ("Paris", "Oslo", "Lima") and 1 <= args["days"] <= 7 and set(args) == {"city", "days"}
    return name == "convert" and 0 <= args["amount"] <= 100 and args["to"] in ("EUR", "USD")


def ask(choice, parallel=False, **sampling):
    return GenerationRequest(messages=[Message(role="user", content="Weather in Paris for 3 days?")], tools=TOOLS,
                             tool_choice=choice, parallel_tool_calls=parallel,
                             sampling=SamplingParams(**({"temperature": 0, "max_tokens": 120} | sampling)))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_format_is_read_from_the_template_as_shipped(name):
    assert isinstance(native_format(template(name)), FORMAT[name])


def test_templates_without_tools_have_no_native_format(smollm2):
    assert native_format(CHATML) is None and native_format(smollm2.loaded.chat_template) is None
    assert smollm2.tool_format is None


def test_tags_that_are_tokens_are_spelled_as_tokens(chat_models):
    qwen, mistral, llama = (chat_models[n].tokenizer for n in ("qwen2.5", "mistral", "llama3.1"))
    open_id = qwen.hf.token_to_id("<tool_call>")
    assert spelling(qwen)("<tool_call>") == f"<[{open_id}]>"
    assert spelling(mistral)("[TOOL_CALLS]") == f"<[{mistral.hf.token_to_id('[TOOL_CALLS]')}]>"
    assert spelling(llama)("<tool_call>") == '"<tool_call>"'  # not in Llama's vocabulary: text


@pytest.mark.parametrize("text, expected", [
    ('<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>\n<tool_call>\n{"name": "b', [("add", {"a": 1})]),
    ('<tool_call>{"name": "add"}</tool_call>', []),  # no arguments: not a call
])
def test_hermes_reads_whole_blocks(text, expected):
    assert [(c.name, json.loads(c.arguments)) for c in Hermes().parse(text)] == expected


def test_llama_reads_calls_separated_by_semicolons_and_ignores_answers():
    text = '{"name": "add", "parameters": {"a": 1}}; {"name": "sub", "parameters": {"b": 2}}'
    assert [(c.name, json.loads(c.arguments)) for c in Llama3().parse(text)] == [("add", {"a": 1}), ("sub", {"b": 2})]
    assert Llama3().parse('{"name": "Ada", "age": 36}') == []


def test_mistral_reads_the_array_and_keeps_whole_calls_of_a_cut_off_one():
    text = '[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1}}, {"name": "sub", "arguments": {"b"'
    calls = Mistral().parse(text)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("add", {"a": 1})]
    assert len(calls[0].id) == 9 and calls[0].id.isalnum()


def history(ids=("call_7f3a", "call_9b2c")) -> list[Message]:
    return [Message(role="system", content="Be brief."), Message(role="user", content="Paris and Oslo?"),
            Message(role="assistant", tool_calls=[ToolCall.create(ids[0], "get_weather", {"city": "Paris", "days": 1}),
                                                  ToolCall.create(ids[1], "get_weather", {"city": "Oslo", "days": 1})]),
            Message(role="tool", tool_call_id=ids[0], content='{"temp": 21}'),
            Message(role="tool", tool_call_id=ids[1], content='{"temp": 9}')]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_conversation_with_parallel_calls_and_results_renders_in_each_template(name):
    fmt = FORMAT[name]()
    text = render_chat(template(name), fmt.conversation(history()), tools=TOOLS, bos_token="<s>", eos_token="</s>")
    expected = {"qwen2.5": ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 1}}\n</tool_call>',
                            '<tool_response>\n{"temp": 9}\n</tool_response>'],
                "llama3.1": ['{"name": "get_weather", "parameters": {"city": "Paris", "days": 1}}<|eot_id|>',
                             '<|start_header_id|>ipython<|end_header_id|>\n\n"{\\"temp\\": 21}"'],
                "mistral": ['[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris", "days": 1}, "id": "',
                            '[TOOL_RESULTS] {"content": {"temp": 21}, "call_id": "']}[name]
    assert all(piece in text for piece in expected), text


def test_mistral_call_ids_are_mapped_the_same_way_in_calls_and_results():
    adapted = Mistral().conversation(history())
    call_ids = [c.id for c in adapted[2].tool_calls]
    assert [m.tool_call_id for m in adapted[3:]] == call_ids
    assert all(len(i) == 9 and i.isalnum() for i in call_ids)
    assert Mistral().conversation(history(("abc123XYZ", "def456UVW")))[2].tool_calls[0].id == "abc123XYZ"


MODES = [("required", False), ("required", True), ("auto", False), ("convert", False)]


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("choice, parallel", MODES)
def test_the_mask_and_the_grammar_agree_on_every_token(chat_models, name, choice, parallel):
    """Random logits through the mask, many times: the grammar never rejects a token the mask
    allowed, and what the finished replies say parses back into the calls the grammar wrote."""
    backend = chat_models[name]
    tokenizer, fmt = backend.tokenizer, backend.tool_format
    grammar = call_grammar(fmt, TOOLS, choice, parallel, None, spelling(tokenizer))
    eos, vocab = tokenizer.eos_token_id, backend.loaded.config.vocab_size
    generator, finished = torch.Generator().manual_seed(0), 0
    for _ in range(25):
        mask = GrammarMask(Constraint(grammar=grammar), tokenizer, vocab)
        ids: list[int] = []
        for _ in range(150):
            logits = mask(torch.randn(vocab, generator=generator) * 3, None)
            logits[eos] += 4  # end when allowed, more often than chance
            token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            mask.consume(token)  # raises GenerationError on a disagreement
            if token == eos:
                break
            ids.append(token)
        if token != eos:
            continue
        finished += 1
        text = tokenizer.decode(ids)
        calls = fmt.parse(text) or untagged_calls(text, [t["function"]["name"] for t in TOOLS])
        untagged = text.startswith(("{", "[", "```json"))  # a call without its tag: held to the schemas too
        if choice != "auto" or fmt.may_open(text) or untagged:
            assert calls and all(valid(c) for c in calls), text
            assert choice in ("auto", "required") or {c.name for c in calls} == {choice}
            assert parallel or len(calls) == 1
        else:
            assert not calls
    assert finished >= 5


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("choice, parallel", MODES)
def test_generate_returns_valid_calls(chat_models, name, choice, parallel):
    backend = chat_models[name]
    for seed in range(3):
        generation = backend.generate(ask(choice, parallel, temperature=1.0, seed=seed))
        if generation.finish_reason == "tool_calls":
            assert generation.text == "" and all(valid(c) for c in generation.tool_calls)
            assert parallel or len(generation.tool_calls) == 1
        else:
            assert choice == "auto" and not generation.tool_calls
    if choice != "auto":
        assert generation.finish_reason == "tool_calls"


@pytest.mark.parametrize("name", list(FAMILIES))
def test_results_go_back_through_the_templates_tool_role(chat_models, name):
    backend = chat_models[name]
    request = ask("required").model_copy(update={"messages": history()})
    prompt = backend.render(FORMAT[name]().conversation(request.messages), request.tools)
    assert {"qwen2.5": "<tool_response>", "llama3.1": "ipython", "mistral": "[TOOL_RESULTS]"}[name] in prompt
    generation = backend.generate(request)
    assert generation.finish_reason == "tool_calls" and all(valid(c) for c in generation.tool_calls)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_tool_choice_none_answers_in_text(chat_models, name):
    generation = chat_models[name].generate(ask("none", max_tokens=12))
    assert not generation.tool_calls and not FORMAT[name]().may_open(generation.text[:1])


def test_llguidance_finds_token_references_in_every_mode(chat_models):
    """The grammars themselves: token references where the tags are tokens, text elsewhere."""
    qwen = chat_models["qwen2.5"]
    grammar = call_grammar(Hermes(), TOOLS, "required", True, None, spelling(qwen.tokenizer))
    assert "<[" in grammar and '"<tool_call>' not in grammar
    text_grammar = call_grammar(Hermes(), TOOLS, "required", True, None)
    assert '"<tool_call>"' in text_grammar
    bits = GrammarMask(Constraint(grammar=grammar), qwen.tokenizer, qwen.loaded.config.vocab_size).allowed()
    tag = qwen.tokenizer.hf.token_to_id("<tool_call>")
    others = [qwen.tokenizer.decode([i]) for i in np.flatnonzero(bits.numpy()).tolist() if i != tag]
    assert bits[tag] and sorted(others) == ["`", "{"]  # the tag as its token, or an untagged call (see untagged_rules)


def test_counting_a_prompt_past_the_context_window_says_how_long_it_is(chat_models):
    """The agent trims its conversation by this count, so it must not raise where stream() would."""
    backend = chat_models["llama3.1"]
    long = GenerationRequest(messages=[Message(role="user", content="weather " * 3000)], tools=TOOLS, tool_choice="auto")
    assert backend.count_prompt(long) > backend.context_window
    with pytest.raises(BackendError, match="context window"):
        backend.generate(long)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_auto_with_a_regex_answer_either_calls_or_answers_in_that_shape(chat_models, name):
    import re

    line = r"[A-Z][a-z ]{0,20}"
    for seed in range(4):
        request = ask("auto", temperature=1.0, seed=seed).model_copy(update={"constraint": Constraint(regex=line)})
        generation = chat_models[name].generate(request)
        assert all(valid(c) for c in generation.tool_calls)
        assert generation.tool_calls or re.fullmatch(line, generation.text), generation.text
