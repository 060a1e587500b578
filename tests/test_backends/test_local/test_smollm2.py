"""The default model against Hugging Face transformers (goldens from scripts/make_goldens.py)."""

import json

import numpy as np
import pytest
import torch

from backends import GenerationRequest, Message, SamplingParams
from tests.conftest import GOLDENS

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def golden():
    data = np.load(GOLDENS / "smollm2.npz")
    return data, json.loads(str(data["meta"]))


def conversation(meta, i):
    return [Message(**m) for m in meta["conversations"][i]]


@pytest.mark.parametrize("i", [0, 1, 2])
def test_prompt_logits_and_greedy_match_transformers(smollm2_exact, golden, i):
    smollm2 = smollm2_exact
    data, meta = golden
    messages = conversation(meta, i)
    text = smollm2.render(messages)
    assert text == meta["transformers_prompts"][i]
    ids = smollm2.tokenizer.encode(text)
    assert ids == data[f"prompt{i}_ids"].tolist()
    logits = smollm2.logits(ids)
    assert logits.shape == (len(ids), 49152) and logits.dtype == torch.float32
    columns = data["columns"]
    assert (logits[:, columns] - torch.from_numpy(data[f"prompt{i}_logits_columns"])).abs().max() < 1e-3
    assert (logits[-1] - torch.from_numpy(data[f"prompt{i}_logits_last"])).abs().max() < 1e-3
    # transformers generated with min_new_tokens, which masks EOS: do the same with a logit bias.
    no_eos = {t: -1e9 for t in smollm2.tokenizer.eos_token_ids}
    sampling = SamplingParams(temperature=0, max_tokens=32, logit_bias=no_eos)
    out = smollm2.generate(GenerationRequest(messages=messages, sampling=sampling))
    assert out.token_ids == data[f"prompt{i}_greedy"].tolist()
    assert out.finish_reason == "length" and out.usage.completion_tokens == 32
    assert out.usage.prompt_tokens == len(ids)


def test_tokenizer_matches_transformers_on_a_varied_corpus(smollm2, golden):
    data, meta = golden
    for i, text in enumerate(meta["corpus"]):
        assert smollm2.tokenizer.encode(text) == data[f"corpus{i}_ids"].tolist(), text
        assert smollm2.tokenizer.decode(smollm2.tokenizer.encode(text)) == text


def test_streamed_reply_ends_on_eos_with_logprobs(smollm2):
    request = GenerationRequest(
        messages=[Message(role="user", content="What is the capital of France?")],
        sampling=SamplingParams(temperature=0, max_tokens=64, logprobs=3),
    )
    events = list(smollm2.stream(request))
    text = "".join(e.text for e in events)
    assert "Paris" in text
    assert events[-1].finish_reason == "eos" and events[-1].text == ""
    assert events[-1].token_id in smollm2.tokenizer.eos_token_ids
    for event in events:
        assert len(event.top_logprobs) == 3
        assert event.top_logprobs[0][1] == pytest.approx(event.logprob)  # greedy picks the top token
        assert [lp for _, lp in event.top_logprobs] == sorted((lp for _, lp in event.top_logprobs), reverse=True)


def test_stop_strings_seeds_and_limits(smollm2):
    messages = [Message(role="user", content="Count from 1 to 20, separated by commas.")]
    greedy = smollm2.generate(GenerationRequest(messages=messages, sampling=SamplingParams(temperature=0, max_tokens=40)))
    assert "5" in greedy.text
    stop = "5"
    stopped = smollm2.generate(
        GenerationRequest(messages=messages, sampling=SamplingParams(temperature=0, max_tokens=40, stop=[stop]))
    )
    assert stopped.finish_reason == "stop" and stop not in stopped.text
    assert greedy.text.startswith(stopped.text)
    sampled = [
        smollm2.generate(GenerationRequest(messages=messages, sampling=SamplingParams(temperature=1.0, seed=7, max_tokens=12)))
        for _ in range(2)
    ]
    assert sampled[0].token_ids == sampled[1].token_ids
    short = smollm2.generate(GenerationRequest(messages=messages, sampling=SamplingParams(max_tokens=3)))
    assert short.finish_reason == "length" and len(short.token_ids) == 3
