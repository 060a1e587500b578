import math

import torch

from backends import SamplingParams
from backends.local.sampling import Sampler

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def test_greedy_is_argmax_with_full_distribution():
    token, logprobs = Sampler(SamplingParams(temperature=0), torch.device("cpu"))(LOGITS)
    assert token == 0
    assert torch.allclose(logprobs, torch.log_softmax(LOGITS, -1))


def test_same_seed_same_tokens():
    sampler_a = Sampler(SamplingParams(temperature=1.5, seed=3), torch.device("cpu"))
    sampler_b = Sampler(SamplingParams(temperature=1.5, seed=3), torch.device("cpu"))
    assert [sampler_a(LOGITS)[0] for _ in range(50)] == [sampler_b(LOGITS)[0] for _ in range(50)]


def test_top_k_top_p_min_p_restrict_the_support():
    dist = Sampler(SamplingParams(temperature=1.0, top_k=2), torch.device("cpu")).distribution(LOGITS)
    assert torch.isfinite(dist).sum() == 2
    probs = torch.softmax(LOGITS, -1)
    dist = Sampler(SamplingParams(temperature=1.0, top_p=0.7), torch.device("cpu")).distribution(LOGITS)
    kept = torch.isfinite(dist).sum().item()
    assert probs[: kept - 1].sum() < 0.7 <= probs[:kept].sum()  # the smallest prefix reaching top_p
    assert math.isclose(dist.exp().sum().item(), 1.0, rel_tol=1e-5)
    dist = Sampler(SamplingParams(temperature=1.0, min_p=0.3), torch.device("cpu")).distribution(LOGITS)
    assert (probs[torch.isfinite(dist)] >= 0.3 * probs.max()).all()


def test_logit_bias_and_draws_stay_in_support():
    sampler = Sampler(SamplingParams(temperature=1.0, top_k=3, logit_bias={5: 100.0}, seed=0), torch.device("cpu"))
    assert {sampler(LOGITS)[0] for _ in range(20)} == {5}
