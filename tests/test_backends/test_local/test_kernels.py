"""Triton attention kernels against the float32 torch reference (TRITON_INTERPRET=1 on the CPU)."""

import pytest
import torch

from backends.local import cpu_kernels

pytest.importorskip("triton")

from backends.local.kernels import decode_attention, decode_attention_ref, prefill_attention, prefill_attention_ref  # noqa: E402
from backends.local.loader import load_model  # noqa: E402

TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3}


def inputs(shape_q, shape_kv, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda shape: torch.randn(*shape, generator=g).to(dtype)  # noqa: E731
    return make(shape_q), make(shape_kv), make(shape_kv)


# (Tq, Tk, group, head dim, dtype, causal): every length pair, GQA group and head dim appears.
PREFILL_CASES = [
    (1, 1, 1, 64, torch.float32, True),
    (1, 130, 4, 128, torch.float16, True),
    (7, 7, 3, 64, torch.float32, True),
    (7, 65, 4, 64, torch.float16, True),
    (64, 64, 1, 128, torch.float32, True),
    (64, 130, 3, 64, torch.float32, True),
    (65, 65, 4, 64, torch.float16, True),
    (65, 130, 1, 128, torch.float32, True),
    (130, 130, 3, 64, torch.float16, True),
    (7, 64, 3, 128, torch.float32, False),
    (130, 65, 1, 64, torch.float32, False),
    (64, 64, 4, 80, torch.float32, True),
    (65, 65, 1, 96, torch.float16, False),
    (7, 7, 1, 32, torch.float32, True),
]


@pytest.mark.parametrize(("tq", "tk", "group", "head_dim", "dtype", "causal"), PREFILL_CASES)
def test_prefill_matches_reference(tq, tk, group, head_dim, dtype, causal):
    q, k, v = inputs((2, 2 * group, tq, head_dim), (2, 2, tk, head_dim), dtype)
    out = prefill_attention(q, k, v, causal=causal)
    reference = prefill_attention_ref(q.float(), k.float(), v.float(), causal=causal)
    assert out.dtype == dtype and out.shape == q.shape
    assert (out.float() - reference).abs().max() < TOLERANCE[dtype]


def test_prefill_on_strided_views_and_custom_scale():
    q, k, v = inputs((1, 4, 9, 64), (1, 2, 40, 64), torch.float32)
    k_view, v_view = k[:, :, :20], v[:, :, :20]  # a KV cache prefix: not contiguous
    out = prefill_attention(q, k_view, v_view, scale=0.05)
    reference = prefill_attention_ref(q, k_view.contiguous(), v_view.contiguous(), scale=0.05)
    assert (out - reference).abs().max() < 1e-4


# (batch, kv heads, group, Tmax, head dim, dtype, seq_lens, splits)
DECODE_CASES = [
    (1, 2, 3, 130, 64, torch.float32, [130], None),
    (3, 1, 4, 200, 128, torch.float32, [1, 77, 200], 3),
    (2, 2, 1, 64, 64, torch.float16, [64, 5], 2),
    (2, 1, 4, 100, 64, torch.float16, [7, 100], 4),
    (2, 1, 3, 96, 128, torch.float32, [0, 96], 2),
]


@pytest.mark.parametrize(("batch", "kv_heads", "group", "t_max", "head_dim", "dtype", "lens", "splits"), DECODE_CASES)
def test_decode_matches_reference(batch, kv_heads, group, t_max, head_dim, dtype, lens, splits):
    q, k, v = inputs((batch, kv_heads * group, head_dim), (batch, kv_heads, t_max, head_dim), dtype)
    seq_lens = torch.tensor(lens, dtype=torch.int32)
    out = decode_attention(q, k, v, seq_lens, num_splits=splits)
    reference = torch.nan_to_num(decode_attention_ref(q.float(), k.float(), v.float(), seq_lens))
    assert out.shape == q.shape and out.dtype == dtype
    assert (out.float() - reference).abs().max() < TOLERANCE[dtype]
    if 0 in lens:
        assert out[lens.index(0)].abs().max() == 0  # an empty sequence reads nothing


def test_decode_split_count_does_not_change_the_answer():
    q, k, v = inputs((1, 4, 64), (1, 1, 160, 64), torch.float32)
    seq_lens = torch.tensor([150], dtype=torch.int32)
    outs = [decode_attention(q, k, v, seq_lens, num_splits=s) for s in (1, 2, 5)]
    assert all((o - outs[0]).abs().max() < 1e-5 for o in outs[1:])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: prefill_attention(*inputs((1, 3, 4, 64), (1, 2, 4, 64), torch.float32)), "multiple of key/value heads"),
        (lambda: prefill_attention(*inputs((1, 2, 8, 64), (1, 2, 4, 64), torch.float32)), "at least as many keys"),
        (lambda: prefill_attention(*inputs((1, 2, 4, 64), (1, 2, 4, 64), torch.float64)), "float16, bfloat16 or float32"),
        (lambda: decode_attention(*inputs((2, 2, 64), (2, 2, 8, 64), torch.float32), torch.tensor([8])),
         "seq_lens must have shape"),
    ],
)
def test_bad_inputs(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_whole_model_through_triton_matches_torch(tiny_models):
    for family in ("llama", "qwen2"):
        model = load_model(tiny_models[family][0]).model
        ids = torch.tensor([[5, 17, 100, 3, 250, 42, 7, 9, 11]])
        results = {}
        for impl in ("torch", "triton"):
            model.set_attention(impl)
            with torch.inference_mode():
                model.setup_cache(1, 16)
                prefill = model(ids[:, :6])[0]
                steps = [model(ids[:, i : i + 1], start=i)[0] for i in range(6, 9)]
            results[impl] = torch.cat([prefill, *steps])
        assert (results["torch"] - results["triton"]).abs().max() < 1e-4, family


def test_backend_option_and_environment_choose_the_kernels(tiny_models, monkeypatch):
    from backends import BackendError, GenerationRequest, Message, SamplingParams, load_backend

    request = GenerationRequest(messages=[Message(role="user", content="hello")],
                                sampling=SamplingParams(temperature=0, max_tokens=6))
    path = str(tiny_models["llama"][1])
    by_option = load_backend("local", model=path, attention="triton")
    assert by_option.attention == "triton"
    monkeypatch.setenv("TOKENTRAIL_ATTENTION", "triton")
    by_env = load_backend("local", model=path)
    assert by_env.attention == "triton"
    monkeypatch.delenv("TOKENTRAIL_ATTENTION")
    plain = load_backend("local", model=path)
    assert plain.attention == ("cpu" if cpu_kernels.available() else "torch")  # the CPU default in fast precision
    assert load_backend("local", model=path, precision="exact").attention == "torch"
    assert by_option.generate(request).token_ids == plain.generate(request).token_ids == by_env.generate(request).token_ids
    monkeypatch.setenv("TOKENTRAIL_CPU_KERNELS", "torch")
    assert load_backend("local", model=path).attention == "torch"
    with pytest.raises((ValueError, BackendError), match="attention='cpu' needs"):
        load_backend("local", model=path, attention="cpu")
    monkeypatch.delenv("TOKENTRAIL_CPU_KERNELS")
    with pytest.raises((ValueError, BackendError), match="'flash' is unknown"):
        load_backend("local", model=path, attention="flash")
