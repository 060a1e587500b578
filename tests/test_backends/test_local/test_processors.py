"""Property tests for the logits processors and the sampler."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from backends import SamplingParams
from backends.local import processors
from backends.local.processors import History
from backends.local.sampling import Sampler

CPU = torch.device("cpu")
logit_lists = st.lists(st.floats(-20, 20, allow_nan=False, allow_subnormal=False, width=32), min_size=2, max_size=40, unique=True)


def finite(t):
    return torch.isfinite(t)


@given(logit_lists, st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_set_reaching_p(values, p):
    logits = torch.tensor(values)
    kept = finite(processors.top_p(p)(logits, History([])))
    probs = torch.softmax(logits, -1)
    order = torch.argsort(probs, descending=True)
    n = int(kept.sum())
    assert kept[order[:n]].all()  # the kept tokens are the most likely ones
    assert probs[order[:n]].sum() >= p - 1e-5  # their mass reaches p
    assert n == 1 or probs[order[: n - 1]].sum() < p + 1e-5  # and one fewer would not


@given(logit_lists, st.integers(1, 50))
def test_top_k_keeps_exactly_k(values, k):
    logits = torch.tensor(values)
    kept = finite(processors.top_k(k)(logits, History([])))
    assert int(kept.sum()) == min(k, len(values))
    assert logits[kept].min() >= logits[~kept].max() if (~kept).any() else True


@given(logit_lists, st.floats(0.0, 1.0))
def test_min_p_keeps_tokens_near_the_top(values, p):
    logits = torch.tensor(values)
    kept = finite(processors.min_p(p)(logits, History([])))
    probs = torch.softmax(logits, -1)
    assert torch.equal(kept, probs >= p * probs.max())


@given(logit_lists, st.lists(st.integers(0, 39), max_size=10), st.floats(1.01, 3.0))
def test_repetition_penalty_only_lowers_seen_tokens(values, seen, penalty):
    logits = torch.tensor(values)
    seen = [s for s in seen if s < len(values)]
    out = processors.repetition_penalty(penalty)(logits, History(seen))
    for i in range(len(values)):
        if i in seen:
            expected = values[i] / penalty if values[i] > 0 else values[i] * penalty
            assert math.isclose(out[i].item(), expected, rel_tol=1e-5, abs_tol=1e-6)
        else:
            assert out[i] == logits[i]


@given(st.lists(st.integers(0, 9), max_size=30), st.floats(-2, 2), st.floats(-2, 2))
def test_frequency_and_presence_penalties_follow_openai(generated, frequency, presence):
    history = History([])
    for token in generated:
        history.add(token)
    out = processors.frequency_presence_penalty(frequency, presence)(torch.zeros(10), history)
    for token in range(10):
        count = generated.count(token)
        assert math.isclose(out[token].item(), -(frequency * count + presence * (count > 0)), abs_tol=1e-5)


@given(logit_lists)
def test_greedy_is_argmax(values):
    logits = torch.tensor(values)
    token, logprobs = Sampler(SamplingParams(temperature=0), CPU)(logits)
    assert token == int(torch.argmax(logits))
    assert torch.allclose(logprobs, torch.log_softmax(logits, -1))


@settings(max_examples=25)
@given(logit_lists, st.integers(0, 2**31), st.floats(0.1, 2.0), st.floats(0.1, 1.0))
def test_same_seed_same_tokens(values, seed, temperature, top_p):
    logits = torch.tensor(values)
    params = SamplingParams(temperature=temperature, top_p=top_p, seed=seed)
    a, b = Sampler(params, CPU), Sampler(params, CPU)
    draws_a = [a(logits)[0] for _ in range(20)]
    assert draws_a == [b(logits)[0] for _ in range(20)]
    support = finite(a.distribution(logits))
    assert all(support[t] for t in draws_a)


def test_logprobs_describe_the_distribution_drawn_from():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0])
    token, logprobs = Sampler(SamplingParams(temperature=0.5, top_k=2, seed=0), CPU)(logits)
    assert finite(logprobs).sum() == 2 and math.isclose(logprobs.exp().sum().item(), 1.0, rel_tol=1e-5)
    assert math.isclose(logprobs[0].item(), torch.log_softmax(torch.tensor([6.0, 4.0]), -1)[0].item(), rel_tol=1e-5)


def test_identity_settings_build_no_processors():
    assert processors.build(SamplingParams(temperature=1.0)) == []
    assert len(processors.build(SamplingParams(temperature=0.5, top_k=5, top_p=0.9, min_p=0.1, repetition_penalty=1.1,
                                               presence_penalty=0.5, logit_bias={1: 2.0}))) == 7
