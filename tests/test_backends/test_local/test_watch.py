"""Where each token looked: SamplingParams(attention=K) against a plain softmax(QKᵀ) over one whole forward."""

import warnings

import pytest
import torch

from backends import GenerationRequest, Message, SamplingParams
from backends.local import model as model_module
from backends.local.attention import causal_mask
from backends.local.backend import LocalBackend
from backends.openai import OpenAIBackend
from backends.scripted import ScriptedBackend

QUESTION = [Message(role="user", content="the quick brown fox jumps over the lazy dog")]


def watched(backend, k: int, max_tokens: int = 6, messages=QUESTION) -> list:
    sampling = SamplingParams(temperature=0, max_tokens=max_tokens, attention=k)
    return list(backend.stream(GenerationRequest(messages=messages, sampling=sampling)))


def reference_weights(backend: LocalBackend, ids: list[int]) -> list[torch.Tensor]:
    """Per layer [T, T]: softmax(QKᵀ) with the causal (and sliding) mask, heads averaged, from one forward over `ids`."""
    rows, plain = [], model_module.attention

    def spy(q, k, v, impl="torch", scale=None, window=0):
        groups = q.shape[1] // k.shape[1]
        keys = k.repeat_interleave(groups, dim=1).double()
        scores = q.double() @ keys.transpose(-1, -2) * (scale or q.shape[-1] ** -0.5)
        mask = causal_mask(q.shape[2], k.shape[2], q.device, window)
        rows.append(scores.masked_fill(~mask, float("-inf")).softmax(-1).mean(dim=1)[0])
        return plain(q, k, v, impl=impl, scale=scale, window=window)

    model = backend.loaded.model
    model_module.attention = spy
    try:
        with torch.inference_mode():
            model.setup_cache(1, len(ids))
            model(torch.tensor([ids]), start=0)
    finally:
        model_module.attention = plain
    return rows


@pytest.mark.parametrize("family", ["qwen2", "gemma3"])  # grouped-query heads; sliding windows, Q/K norms, own scale
def test_each_token_names_the_positions_a_plain_softmax_gives_them_in_exact_precision(tiny_models, family):
    backend = LocalBackend(str(tiny_models[family][1]), precision="exact", auto_pull=False)
    events = watched(backend, k=4)
    prompt = backend.prompt_ids(GenerationRequest(messages=QUESTION))
    assert events[0].prompt_tokens == [backend.tokenizer.display(i) for i in prompt]
    assert all(e.prompt_tokens is None for e in events[1:])
    generated = [e.token_id for e in events]
    reference = reference_weights(backend, prompt + generated[:-1])
    n_layers = len(backend.loaded.model.layers)
    for i, event in enumerate(events):
        row = len(prompt) - 1 + i  # the position whose forward gave this token's logits
        assert len(event.attention.layers) == n_layers
        for layer, looked in zip(reference, event.attention.layers):
            expected = torch.topk(layer[row], 4)
            assert [x.position for x in looked] == expected.indices.tolist()
            assert [x.weight for x in looked] == pytest.approx(expected.values.tolist(), abs=1e-6)
            context = prompt + generated
            assert [x.token for x in looked] == [backend.tokenizer.display(context[x.position]) for x in looked]
        mean = torch.stack([layer[row] for layer in reference]).mean(0)
        assert [x.position for x in event.attention.mean] == torch.topk(mean, 4).indices.tolist()


def test_the_same_weights_come_from_a_reused_prefix_and_k_past_the_context_is_clipped(tiny_models):
    backend = LocalBackend(str(tiny_models["qwen2"][1]), auto_pull=False)  # fast precision, quantized
    long = [Message(role="user", content="the quick brown fox jumps over the lazy dog " * 12)]
    cold = watched(backend, k=3, messages=long)
    warm = watched(backend, k=3, messages=long)
    assert warm[0].cached_prompt_tokens > 0
    assert [e.attention for e in warm] == [e.attention for e in cold]
    events = watched(backend, k=4096, max_tokens=2)
    first, second = events[0].attention, events[1].attention
    assert len(first.mean) == len(events[0].prompt_tokens) and len(second.mean) == len(first.mean) + 1
    assert sum(x.weight for x in first.layers[0]) == pytest.approx(1.0, abs=1e-4)


def test_without_the_request_no_weights_are_kept_or_sent(tiny_models):
    backend = LocalBackend(str(tiny_models["qwen2"][1]), auto_pull=False)
    events = watched(backend, k=0, max_tokens=3)
    assert all(e.attention is None and e.prompt_tokens is None for e in events)
    assert all(layer.attention.looked is None and not layer.attention.record for layer in backend.loaded.model.layers)


def test_a_backend_that_cannot_see_attention_says_so_once_and_generates(monkeypatch):
    backend = ScriptedBackend(["hello there", "again"])
    with pytest.warns(RuntimeWarning, match="attention"):
        first = watched(backend, k=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = watched(backend, k=3)
    assert "".join(e.text for e in first) == "hello there" and "".join(e.text for e in second) == "again"
    assert all(e.attention is None for e in first + second)
    assert OpenAIBackend.supports_attention is False and LocalBackend.supports_attention is True
