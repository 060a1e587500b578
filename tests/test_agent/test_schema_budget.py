"""Every phase's schema ends within the agent's token budget, whatever the model does: random logits
through the real grammar mask, many times, on a vocabulary of short tokens restricted to ASCII text
(at least one character a token: the bounds are in characters; a character of another script may
take several byte tokens)."""

import pytest
import torch

from agent.turns import MAX_STRING, VERDICT_SCHEMA, act_schema, parse_json, parse_turn, plan_schema
from backends.local.constraints import GrammarMask
from backends.local.tokenizer import LocalTokenizer
from backends.types import Constraint
from tests.fixtures.tiny_models import tiny_tokenizer
from tools import SeenNumbers, ToolRegistry

BUDGET = 300  # the agent's default max_tokens


@pytest.fixture(scope="module")
def tokenizer():
    return LocalTokenizer(tiny_tokenizer(), 0, [2], False)


def ascii_tokens(tokenizer) -> torch.Tensor:
    texts = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
    return torch.tensor([bool(t) and t.isascii() and "\ufffd" not in t for t in texts]) | (
        torch.arange(tokenizer.vocab_size) == tokenizer.eos_token_id)


def schemas(tmp_path_factory):
    tools = ToolRegistry.with_builtins(tmp_path_factory.mktemp("ws")).schemas()
    # one call a turn, the agent's default; each further parallel call needs about as many tokens again
    return {"plan": plan_schema(5), "verify": VERDICT_SCHEMA, "act": act_schema(tools, 1), "answer": act_schema([], 1)}


@pytest.mark.parametrize("phase", ["plan", "verify", "act", "answer"])
def test_every_phase_ends_within_its_budget_with_a_readable_reply(tokenizer, tmp_path_factory, phase):
    schema = schemas(tmp_path_factory)[phase]
    generator, writable = torch.Generator().manual_seed(0), ascii_tokens(tokenizer)
    for _ in range(15):
        mask = GrammarMask(Constraint(json_schema=schema), tokenizer, tokenizer.vocab_size)
        ids = []
        for _ in range(BUDGET):
            logits = torch.randn(tokenizer.vocab_size, generator=generator) * 2
            logits = mask(logits.masked_fill(~writable, float("-inf")), None)
            token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            mask.consume(token)
            if token == tokenizer.eos_token_id:
                break
            ids.append(token)
        assert token == tokenizer.eos_token_id, f"{phase} ran past {BUDGET} tokens: {tokenizer.decode(ids)[:200]!r}"
        text = tokenizer.decode(ids)
        if phase in ("act", "answer"):
            turn = parse_turn(text)
            assert turn.answer is not None or turn.calls
        else:
            assert isinstance(parse_json(text), dict)


def test_no_string_a_turn_may_write_is_longer_than_the_bound(tmp_path):
    """A random fuzz rarely writes the longest string: the calculator's own maxLength of 500 let the 135M
    model write '250*250*...' to max_tokens, in every act turn of a run."""
    registry = ToolRegistry.with_builtins(tmp_path)

    def strings(node):
        if isinstance(node, dict):
            if node.get("type") == "string" and not {"enum", "const"} & set(node):
                yield node
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for value in node:
                yield from strings(value)

    for seen in (None, SeenNumbers(("17", "25")), SeenNumbers(("42", "3"), each_once=True)):
        found = list(strings(act_schema(registry.schemas(seen), 1)))
        assert found and all(s.get("maxLength", 10**9) <= MAX_STRING for s in found)


def test_a_turn_that_must_call_still_answers_when_every_call_is_used_up():
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]
    assert "tool_calls" in act_schema(tools, 1, must_call=True)["anyOf"][0]["properties"]
    used_up = act_schema(tools, 1, made=[("now", {})], must_call=True)
    assert [list(o["properties"]) for o in used_up["anyOf"]] == [["answer"]]
