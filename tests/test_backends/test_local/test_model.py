"""The KV cache: prefill plus decode gives the logits of one full forward pass."""

import torch

from backends.local.attention import attention, causal_mask
from backends.local.loader import load_model


def test_incremental_decode_matches_full_forward(tiny_models):
    for family, (folder, _, _) in tiny_models.items():
        model = load_model(folder).model
        ids = torch.tensor([[5, 17, 100, 3, 250, 42, 7, 9, 11, 13]])
        with torch.inference_mode():
            model.setup_cache(1, 32)
            full = model(ids)[0]
            model.setup_cache(1, 32)
            steps = [model(ids[:, :4])[0]]  # prefill 4, then a chunk of 3, then one at a time
            steps.append(model(ids[:, 4:7], start=4)[0])
            steps += [model(ids[:, i : i + 1], start=i)[0] for i in range(7, 10)]
        assert torch.allclose(full, torch.cat(steps), atol=1e-5), family


def test_last_only_returns_the_last_position(tiny_models):
    model = load_model(tiny_models["qwen2"][0]).model
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        assert torch.allclose(model(ids)[:, -1:], model(ids, last_only=True), atol=1e-6)


def test_causal_mask_is_bottom_right_aligned():
    mask = causal_mask(2, 4, torch.device("cpu"))
    assert mask.tolist() == [[True, True, True, False], [True, True, True, True]]


def test_attention_with_gqa_matches_repeated_heads():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 6, 3, 8, generator=g)
    k, v = torch.randn(1, 2, 5, 8, generator=g), torch.randn(1, 2, 5, 8, generator=g)
    out = attention(q, k, v)
    k_rep, v_rep = k.repeat_interleave(3, dim=1), v.repeat_interleave(3, dim=1)
    scores = (q @ k_rep.transpose(-1, -2)) / 8**0.5
    scores = scores.masked_fill(~causal_mask(3, 5, q.device), float("-inf"))
    assert torch.allclose(out, scores.softmax(-1) @ v_rep, atol=1e-6)
