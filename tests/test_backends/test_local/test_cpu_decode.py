"""A decoding step as one C++ call (cpu_decode.py) against the model's own forward, block by block in torch."""

import pytest
import torch

from backends.local import cpu_kernels, lora
from backends.local.cpu_decode import fits
from backends.local.loader import load_model
from backends.local.model import Rows
from backends.local.quant_layers import OutputHead
from tests.fixtures.tiny_models import Q4_K_M_LIKE, random_weights, tiny_config, tiny_tokenizer, write_gguf
from tests.fixtures.tiny_models import GGMLQuantizationType as QT

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="no g++ or no AVX2 here")
IDS = [5, 17, 3, 42, 8, 23, 11, 2, 30, 7]


@pytest.fixture(autouse=True)
def our_kernels(monkeypatch):
    monkeypatch.setenv("TOKENTRAIL_CPU_KERNELS", "tokentrail")


def mixed(name: str) -> QT | None:
    """llama.cpp's Q4_K_M choices (the query and key, the value and the output of other kinds), a 32-value type for
    the Q4_K down projection (these tiny dimensions are not whole blocks of 256)."""
    kinds = Q4_K_M_LIKE | {"ffn_down": QT.Q5_1}
    return next((kind for part, kind in kinds.items() if f"{part}." in name), None)


def tiny(tmp_path, family, quant):
    tokenizer = tiny_tokenizer()
    cfg = tiny_config(family, tokenizer.get_vocab_size(with_added_tokens=True))
    model = load_model(write_gguf(tmp_path / f"{family}.gguf", cfg, random_weights(cfg), tokenizer, quant=quant),
                       precision="fast").model
    if isinstance(model.output, OutputHead):
        # The head ranks every token with int4 and recomputes its best 64 from the file: a near tie at the 64th
        # place would swap which logits are recomputed, whatever the blocks gave. All recomputed here.
        model.output.k = cfg["vocab_size"]
    return model


@torch.inference_mode()
def teacher_forced(model, impl, capacity=32):
    """Logits of each decoding step after a 4-token prompt, the same tokens fed whatever comes out."""
    model.set_attention(impl)
    model.cached = []
    model.setup_cache(1, capacity)
    out = [model.prefill(IDS[:4], 0)]
    for position in range(4, len(IDS)):
        out.append(model(torch.tensor([[IDS[position]]]), start=position)[0, -1])
    return torch.stack(out)


def close(a, b):
    return ((a - b).norm() / b.norm()).item() < 2e-3


@pytest.mark.parametrize("family,quant", [(family, quant)
                                          for family in ("llama", "qwen2", "mistral", "llama3.2", "phi3", "qwen3", "gemma3")
                                          for quant in (QT.Q4_0, QT.Q5_0, QT.Q8_0, mixed)
                                          if (family, quant) != ("phi3", mixed)])  # phi3 files fuse Q, K and V
def test_the_step_gives_the_blocks_results(tmp_path, family, quant):
    model = tiny(tmp_path, family, quant)
    expected = teacher_forced(model, "torch")
    assert model.decode_step is None
    got = teacher_forced(model, "cpu")
    assert fits(model) and model.decode_step is not None  # it ran
    assert close(got, expected)
    if quant is mixed:  # side-by-side parts of different kinds in one projection
        assert model.decode_step.layers[0].qkv.parts == 2


def test_q4_k_projections_run_on_their_own_scales_in_the_step(tmp_path):
    """Whole blocks of 256 along every input: each projection keeps Q4_K's codes, which the step reads; its logits
    are exact precision's, where the same blocks are expanded to float32."""
    tokenizer = tiny_tokenizer()
    cfg = tiny_config("qwen2", tokenizer.get_vocab_size(with_added_tokens=True)) | {
        "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4}
    path = write_gguf(tmp_path / "q4_k.gguf", cfg, random_weights(cfg), tokenizer,
                      quant=lambda name: QT.Q4_K if "blk." in name and name.endswith(".weight") and "norm" not in name else None)
    model = load_model(path, precision="fast").model
    expected = teacher_forced(load_model(path, precision="exact").model, "torch")  # the file's values in float32
    got = teacher_forced(model, "cpu")
    parts = [model.decode_step.layers[0].qkv.part[0], model.decode_step.layers[0].down.part[0]]
    assert all(p.codes and p.supers and not p.scale for p in parts)
    assert close(got, expected)


def test_a_sliding_window_and_a_grown_cache(tmp_path):
    model = tiny(tmp_path, "llama", QT.Q4_1)
    for block in model.layers:
        block.attention.window = 3
    expected = teacher_forced(model, "torch")
    assert close(teacher_forced(model, "cpu"), expected)
    first = model.decode_step
    assert close(teacher_forced(model, "cpu", capacity=200), expected)  # a new cache, read at each call
    assert model.decode_step is first and first.layers[0].capacity == 200


@torch.inference_mode()
def batched(model, impl):
    """Logits of 4 decoding steps of 3 sequences at their own positions (prompts of 2, 5 and 3 tokens)."""
    model.set_attention(impl)
    model.setup_cache(3, 32)
    prompts = [IDS[:2], IDS[:5], IDS[:3]]
    for row, prompt in enumerate(prompts):  # each prompt computed in its own row
        model.compute(torch.tensor([prompt]), Rows(torch.tensor([0]), len(prompt), slots=torch.tensor([row])))
    positions, out = torch.tensor([len(p) for p in prompts]), []
    for step in range(4):
        ids = torch.tensor([[IDS[5 + step]], [IDS[6 + step]], [IDS[step]]])
        out.append(model.compute(ids, Rows(positions, int(positions.max()) + 1))[:, -1])
        positions = positions + 1
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_a_batch_of_sequences_at_their_own_positions(tmp_path, family):
    model = tiny(tmp_path, family, mixed)
    expected = batched(model, "torch")
    got = batched(model, "cpu")
    assert model.decode_step is not None
    for row in range(3):
        assert close(got[row], expected[row])


def test_a_position_past_the_cache_is_refused_not_written(tmp_path):
    model = tiny(tmp_path, "llama", QT.Q4_0)
    teacher_forced(model, "cpu")
    capacity = model.layers[0].attention.cache.k.shape[2]
    with torch.inference_mode(), pytest.raises(ValueError, match=f"over {capacity} positions"):
        model(torch.tensor([[3]]), start=capacity)


def test_what_it_does_not_take_runs_the_blocks(tmp_path):
    model = tiny(tmp_path, "qwen2", QT.Q4_0)
    teacher_forced(model, "cpu")
    assert model.decode_step is not None
    model.record_attention(True)
    assert not fits(model)
    model.record_attention(False)
    lora.attach(model, lora.LoRAConfig(rank=2))
    assert not fits(model)
    teacher_forced(model, "cpu")
    assert model.decode_step is None


def reference_attention(q, k, v, scale, window):
    scores = torch.einsum("hd,htd->ht", q, k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)) * scale
    if window:
        scores[:, : scores.shape[1] - window] = float("-inf")
    return torch.einsum("ht,htd->hd", scores.softmax(-1), v.repeat_interleave(q.shape[0] // k.shape[0], dim=0))


@pytest.mark.parametrize("rot,window,position", [(64, 0, 0), (64, 0, 300), (32, 0, 17), (64, 5, 40)])
def test_attend_one_is_rope_then_attention(rot, window, position):
    h, hkv, d, capacity = 8, 2, 64, 512
    qkv = torch.randn(h + 2 * hkv, d)
    keys, values = torch.randn(hkv, capacity, d), torch.randn(hkv, capacity, d)
    angle = torch.rand(rot // 2) * 6
    cos, sin = torch.cat((angle.cos(), angle.cos())), torch.cat((angle.sin(), angle.sin()))
    rotated = qkv.clone()
    x = rotated[: h + hkv, :rot].clone()
    rotated[: h + hkv, :rot] = x * cos + torch.cat((-x[:, rot // 2 :], x[:, : rot // 2]), dim=-1) * sin
    k_cache, v_cache = keys.clone(), values.clone()
    out = cpu_kernels.attend_one(qkv, k_cache, v_cache, position, cos, sin, scale=0.1, window=window)
    assert torch.allclose(qkv, rotated, atol=1e-6)  # rotated in place
    assert torch.equal(k_cache[:, position], qkv[h : h + hkv]) and torch.equal(v_cache[:, position], qkv[h + hkv :])
    seen = slice(0, position + 1)
    expected = reference_attention(rotated[:h], k_cache[:, seen], v_cache[:, seen], 0.1, window)
    assert torch.allclose(out.view(h, d), expected, atol=1e-5)


def test_attend_one_names_bad_shapes():
    qkv, cache = torch.randn(6, 32), torch.zeros(2, 8, 32)
    cos = torch.ones(32)
    with pytest.raises(ValueError, match="position < capacity"):
        cpu_kernels.attend_one(qkv, cache, cache.clone(), 8, cos, cos)
    with pytest.raises(ValueError, match="float32"):
        cpu_kernels.attend_one(qkv.half(), cache, cache.clone(), 0, cos, cos)
    with pytest.raises(ValueError, match="rotary_dim"):
        cpu_kernels.attend_one(qkv, cache, cache.clone(), 0, torch.ones(33), torch.ones(33))
