import math

import pytest
import torch
from pydantic import ValidationError

from backends import BackendError, Constraint, GenerationRequest, Message, SamplingParams, load_backend
from backends.local.beam import beam_search

EOS = 0


class TableModel:
    """A constructed distribution: the next-token probabilities depend on the whole prefix."""

    def __init__(self, table, vocab=5):
        self.table, self.vocab, self.prefixes = table, vocab, [()]

    def logits(self, prefix):
        probs = torch.full((self.vocab,), 1e-6)
        for token, p in self.table.get(prefix, {EOS: 1.0}).items():
            probs[token] = p
        return probs.log()

    def start(self):
        self.prefixes = [()]
        return self.logits(())

    def step(self, tokens, parents):
        self.prefixes = [self.prefixes[p] + (t,) for t, p in zip(tokens, parents)]
        return torch.stack([self.logits(prefix) for prefix in self.prefixes])


# Greedy takes 1 (0.6) and then faces a flat 0.25; taking 2 (0.4) first leads to 3 (0.9).
TABLE = {
    (): {1: 0.6, 2: 0.4},
    (1,): {1: 0.25, 2: 0.25, 3: 0.25, 4: 0.25},
    (2,): {3: 0.9, 4: 0.1},
}


def test_beam_search_finds_the_more_likely_sequence():
    best = beam_search(TableModel(TABLE), width=2, max_new_tokens=3, eos_ids=[EOS], length_penalty=0.0)
    assert best.tokens == [2, 3] and best.finished
    assert math.isclose(best.score, math.log(0.4 * 0.9), rel_tol=1e-3)
    greedy = beam_search(TableModel(TABLE), width=1, max_new_tokens=3, eos_ids=[EOS], length_penalty=0.0)
    assert greedy.tokens[0] == 1 and greedy.score < best.score


def test_width_one_equals_greedy_on_the_model(tiny_models):
    backend = load_backend("local", model=str(tiny_models["qwen2"][1]))
    messages = [Message(role="user", content="the quick brown fox")]
    greedy = backend.generate(GenerationRequest(messages=messages, sampling=SamplingParams(temperature=0, max_tokens=8)))
    beam1 = backend.generate(GenerationRequest(
        messages=messages, sampling=SamplingParams(temperature=0, max_tokens=8, beam_width=1)))
    beam4 = backend.generate(GenerationRequest(
        messages=messages, sampling=SamplingParams(temperature=0, max_tokens=8, beam_width=4, length_penalty=0.0)))
    assert greedy.token_ids == beam1.token_ids
    greedy_total = sum(e.logprob for e in greedy.events)
    assert beam4.score is not None and beam4.score >= greedy_total - 1e-4  # beam search never does worse
    assert math.isclose(beam4.score, sum(e.logprob for e in beam4.events), rel_tol=1e-4)


def test_contradictory_settings_fail_before_generation(tiny_models):
    with pytest.raises(ValidationError, match="beam search is deterministic"):
        SamplingParams(beam_width=3, temperature=0.7)
    backend = load_backend("local", model=str(tiny_models["qwen2"][1]))
    request = GenerationRequest(
        messages=[Message(role="user", content="x")], sampling=SamplingParams(temperature=0, beam_width=2),
        constraint=Constraint(regex="a+"),
    )
    with pytest.raises(BackendError, match="beam search does not combine with a constraint"):
        backend.stream(request)
