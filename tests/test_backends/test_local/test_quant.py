"""Quantized weights: GGUF blocks map onto the int4/int8 kernels without changing a value."""

import numpy as np
import pytest
import torch
from gguf.quants import dequantize, quantize

from backends.local import cpu_kernels, quant_layers
from backends.local.block_linear import BlockInt4Linear, BlockInt5Linear, BlockInt8Linear, Int5Blocks, int5_from_gguf
from backends.local.quant import concat, int4_from_gguf, int4_groups, int8_rows, map_rows, requantized, split_rows
from backends.local.quant_layers import (
    ConcatLinear,
    GGUFRows,
    Int4Linear,
    Int8Linear,
    OutputHead,
    fused_linear,
    linear,
    top_indices,
)
from tests.fixtures.tiny_models import GGMLQuantizationType as QT
from tests.fixtures.tiny_models import quantize_q4_k


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)  # random inputs, the same ones every run


@pytest.fixture
def torch_kernels(monkeypatch):
    monkeypatch.setenv("TOKENTRAIL_CPU_KERNELS", "torch")


@pytest.fixture
def our_kernels(monkeypatch):
    if not cpu_kernels.available():
        pytest.skip("our CPU kernels do not run here")
    monkeypatch.setenv("TOKENTRAIL_CPU_KERNELS", "tokentrail")


def matrix(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, cols)) * rng.uniform(0.01, 1, (rows, 1))).astype(np.float32)


def blocks(array: np.ndarray, qtype: QT) -> np.ndarray:
    return quantize_q4_k(array) if qtype == QT.Q4_K else quantize(array, qtype)


@pytest.mark.parametrize("qtype", [QT.Q4_0, QT.Q4_1, QT.Q4_K])
def test_int4_mapping_reproduces_ggufs_own_dequantization(qtype):
    array = matrix(48, 512)
    raw = blocks(array, qtype)
    reference = dequantize(raw, qtype).reshape(array.shape)
    weight = int4_from_gguf(raw, qtype)
    assert weight.nibbles.shape == (48, 256) and int(weight.values().max()) <= 15
    assert np.allclose(weight.dequantize().numpy(), reference, rtol=0, atol=1e-6 * np.abs(reference).max())
    if qtype == QT.Q4_K:  # our test quantizer is a real Q4_K: close to the input
        assert np.abs(reference - array).max() < 0.1 * np.abs(array).max()


@pytest.mark.parametrize("qtype", [QT.Q4_0, QT.Q4_K])
def test_int4_linear_matches_a_float_matmul(qtype):
    array = matrix(80, 256, seed=1)
    weight = int4_from_gguf(blocks(array, qtype), qtype)
    bias = torch.randn(80)
    layer = Int4Linear(weight, bias)
    x = torch.randn(3, 5, 256)
    expected = x @ weight.dequantize().T + bias
    got = layer(x).float()
    assert got.shape == (3, 5, 80)
    assert ((got - expected).norm() / expected.norm()) < 0.01  # bfloat16 activations and scales


def test_int8_rows_and_refined_top_logits():
    w = torch.from_numpy(matrix(1000, 64, seed=2))
    q = int8_rows(w)
    assert (q.dequantize() - w).abs().max() <= q.scale.max() / 2 + 1e-7
    matmul = Int8Linear(q, None)
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(2))
    exact = x @ q.dequantize().T
    rough = matmul(x).float()
    refined = OutputHead(matmul, k=8)(x)
    picked = rough.topk(8, dim=-1).indices  # the head recomputes what the rough pass ranked best
    assert torch.allclose(refined.gather(-1, picked), exact.gather(-1, picked), atol=1e-5)
    assert (rough.gather(-1, picked) - exact.gather(-1, picked)).abs().max() > 1e-4  # what the refinement fixes
    best = exact.topk(4, dim=-1)  # well inside the refined eight, so ranked and valued exactly
    assert torch.equal(refined.topk(4, dim=-1).indices, best.indices)
    assert torch.allclose(refined.topk(4, dim=-1).values, best.values, atol=1e-5)
    assert torch.equal(matmul.rows(torch.tensor([3, 7])), q.dequantize()[[3, 7]])


@pytest.mark.parametrize("vocab", [100, 49152, 151936, 4099])
def test_top_indices_are_topks_set(vocab):
    y = torch.randn(2, 3, vocab)
    y[0, 0, :40] = 7.0  # a run of ties inside one block
    y[1, 2, 17::32] = 9.0  # the top values spread one a block
    got = top_indices(y, 64).sort(-1).values
    want = y.topk(64, dim=-1).values.sort(-1).values
    assert got.shape == (2, 3, 64) and all(row.unique().numel() == 64 for row in got.view(-1, 64))
    assert torch.equal(y.gather(-1, got).sort(-1).values, want)  # the same values (ties may pick other indices)


def test_the_head_refines_from_the_files_own_rows():
    array = matrix(500, 64, seed=8)
    raw = blocks(array, QT.Q8_0)
    exact_w = torch.from_numpy(dequantize(raw, QT.Q8_0).reshape(array.shape))
    head = OutputHead(Int8Linear(int8_rows(exact_w), None), GGUFRows(raw, QT.Q8_0), k=12)
    x = torch.randn(3, 64)
    expected = x @ exact_w.T
    top = expected.topk(4, dim=-1).indices
    assert torch.allclose(head(x).gather(-1, top), expected.gather(-1, top), atol=1e-5)


def test_int4_groups_round_trip_error_is_bounded():
    w = torch.from_numpy(matrix(32, 128, seed=3))
    q = int4_groups(w)
    step = q.scale.repeat_interleave(32, dim=1)
    assert ((q.dequantize() - w).abs() <= step / 2 + 1e-6).all()


def test_projections_of_mixed_kinds_run_side_by_side(torch_kernels, monkeypatch):
    monkeypatch.setattr(quant_layers, "int4_kernel_is_fast", lambda: True)  # torch's int4 kernel, even where it is slow
    a = int4_groups(torch.from_numpy(matrix(16, 64, seed=4)))
    b = int8_rows(torch.from_numpy(matrix(32, 64, seed=5)))
    bias = torch.randn(48)
    fused = fused_linear([a, b], bias)
    assert isinstance(fused, ConcatLinear) and isinstance(fused.parts[0], Int4Linear)
    x = torch.randn(2, 64)
    expected = x @ torch.cat([a.dequantize(), b.dequantize()]).T + bias
    assert ((fused(x) - expected).norm() / expected.norm()) < 0.01
    one_matmul = fused_linear([a, a])
    assert isinstance(one_matmul, Int4Linear) and one_matmul.out_features == 32
    bias = torch.randn(64)
    neighbours = fused_linear([a, a, b], bias)  # a query and key of one kind beside a value of another: two matmuls
    assert [p.out_features for p in neighbours.parts] == [32, 32]
    expected = x @ torch.cat([a.dequantize(), a.dequantize(), b.dequantize()]).T + bias
    assert ((neighbours(x) - expected).norm() / expected.norm()) < 0.01
    assert torch.equal(concat([a, a]).dequantize(), torch.cat([a.dequantize()] * 2))


def test_a_shape_the_int4_kernel_cannot_take_runs_as_int8(torch_kernels):
    weight = int4_groups(torch.from_numpy(matrix(24, 64, seed=6)))  # 24 outputs: not a multiple of 16
    layer = linear(weight)
    assert isinstance(layer, Int8Linear)
    x = torch.randn(1, 64)
    expected = x @ weight.dequantize().T
    assert ((layer(x).float() - expected).norm() / expected.norm()) < 0.02


@pytest.mark.parametrize("qtype", [QT.Q8_0, QT.Q4_K, QT.Q5_0])
def test_embedding_rows_are_dequantized_on_lookup(qtype):
    array = matrix(40, 256, seed=7)
    raw = blocks(array, qtype)
    table = GGUFRows(raw, qtype)
    assert table.shape == (40, 256)
    ids = torch.tensor([[0, 39, 5], [5, 5, 1]])
    expected = torch.from_numpy(dequantize(raw, qtype).reshape(array.shape))[ids]
    assert torch.equal(table(ids), expected)


@pytest.mark.parametrize("qtype", [QT.Q8_0, QT.Q5_0, QT.Q5_1, QT.Q4_K])
def test_requantized_rows_match_requantizing_ggufs_own_dequantization(qtype):
    array = matrix(70, 512, seed=9)  # rows that do not fill the last part
    raw = blocks(array, qtype)
    reference = torch.from_numpy(dequantize(raw, qtype).reshape(array.shape))
    done = []
    as_int8 = requantized(raw, qtype, "int8", lambda first, end: done.append((first, end)))
    expected = int8_rows(reference)
    assert torch.equal(as_int8.q, expected.q) and torch.equal(as_int8.scale, expected.scale)
    assert done[0][0] == 0 and done[-1][1] >= 70 and all(a[1] == b[0] for a, b in zip(done, done[1:]))
    as_int4, expected4 = requantized(raw, qtype, "int4"), int4_groups(reference)
    assert all(torch.equal(getattr(as_int4, f), getattr(expected4, f)) for f in ("nibbles", "scale", "zero"))


def test_fast_mode_reads_embedding_rows_from_the_file_without_copying_them(tmp_path):
    from backends.local.gguf_file import load_gguf
    from backends.local.quant import Deferred
    from tests.fixtures.tiny_models import random_weights, tiny_config, tiny_tokenizer, write_gguf

    tokenizer = tiny_tokenizer()
    cfg = tiny_config("qwen2", tokenizer.get_vocab_size(with_added_tokens=True))
    gguf = write_gguf(tmp_path / "qwen2.gguf", cfg, random_weights(cfg), tokenizer, quant=QT.Q8_0)
    checkpoint = load_gguf(gguf, quantized=True)
    matrices = {n: w for n, w in checkpoint.weights.items() if n.endswith("proj.weight")}
    assert matrices and all(isinstance(w, Deferred) for w in matrices.values())  # converted when a layer takes them
    address = checkpoint.weights["model.embed_tokens.rows"].raw.data_ptr()
    mapped = [line.split() for line in open("/proc/self/maps") if line.rstrip().endswith(str(gguf))]
    assert any(int(span.split("-")[0], 16) <= address < int(span.split("-")[1], 16) for span, *_ in mapped)


def test_without_avx512_int4_weights_run_as_int8_rows(monkeypatch, torch_kernels):
    weight = int4_from_gguf(blocks(matrix(64, 256, seed=4), QT.Q4_K), QT.Q4_K)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    layer = linear(weight)
    assert isinstance(layer, Int8Linear)  # torch's AVX2 int4 kernel is the slow one
    x = torch.randn(2, 256)
    expected = x @ weight.dequantize().T
    assert ((layer(x).float() - expected).abs().max() / expected.abs().max()) < 0.02
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert isinstance(linear(weight), Int4Linear)


@pytest.mark.parametrize("qtype", [QT.Q8_0, QT.Q5_0])
def test_q8_0_and_q5_0_as_int8_blocks_keep_the_files_values_and_block_scales(qtype):
    array = matrix(70, 512, seed=10)
    raw = blocks(array, qtype)
    reference = torch.from_numpy(dequantize(raw, qtype).reshape(array.shape))
    weight = requantized(raw, qtype, "blocks")
    assert weight.d.dtype == torch.float16 and weight.d.shape == (70, 16)
    assert torch.equal(weight.dequantize(), reference)


@pytest.mark.parametrize("qtype", [QT.Q5_1, QT.Q4_K])
def test_other_types_as_int8_blocks_are_within_half_a_block_step(qtype):
    array = matrix(40, 256, seed=11)
    reference = torch.from_numpy(dequantize(blocks(array, qtype), qtype).reshape(array.shape))
    weight = requantized(blocks(array, qtype), qtype, "blocks")
    step = weight.d.float().repeat_interleave(32, dim=1)
    assert ((weight.dequantize() - reference).abs() <= step / 2 + 1e-6).all()


@pytest.mark.parametrize("qtype", [QT.Q5_0, QT.Q5_1])
def test_q5_as_int5_groups_keep_the_files_values_and_scales(qtype):
    array = matrix(70, 512, seed=10)
    raw = blocks(array, qtype)
    reference = torch.from_numpy(dequantize(raw, qtype).reshape(array.shape))
    weight = int5_from_gguf(raw, qtype)
    assert weight.nibbles.shape == (70, 256) and weight.high.shape == (70, 64) and weight.scale.dtype == torch.float16
    assert torch.equal(weight.dequantize(), reference)
    assert weight.values().max() > 15  # the fifth bits are there


def test_quantized_weights_of_every_kind_concat_split_and_reorder_by_rows():
    weight = int5_from_gguf(blocks(matrix(24, 64, seed=14), QT.Q5_0), QT.Q5_0)
    top, rest = split_rows(weight, (10, 14))
    assert isinstance(top, Int5Blocks) and top.shape == (10, 64)
    assert torch.equal(concat([top, rest]).dequantize(), weight.dequantize())
    flipped = map_rows(weight, lambda t: t.flip(0))
    assert torch.equal(flipped.dequantize(), weight.dequantize().flip(0))
    with pytest.raises(ValueError, match="one kind"):
        concat([top, int8_rows(torch.randn(4, 64))])


@pytest.mark.parametrize("qtype", [QT.Q4_0, QT.Q4_1, QT.Q4_K, QT.Q8_0, QT.Q5_0, QT.Q5_1])
def test_our_kernels_run_gguf_weights_like_a_float_matmul(qtype, our_kernels):
    k = 512 if qtype == QT.Q4_K else 352  # 11 groups of 32: the kernel's tail; 48 outputs: any count runs
    raw = blocks(matrix(48, k, seed=12), qtype)
    if qtype == QT.Q8_0:
        weight, kind = requantized(raw, qtype, "blocks"), BlockInt8Linear
    elif qtype in (QT.Q5_0, QT.Q5_1):
        weight, kind = int5_from_gguf(raw, qtype), BlockInt5Linear
    else:
        weight, kind = int4_from_gguf(raw, qtype), BlockInt4Linear
    bias = torch.randn(48)
    x = torch.randn(2, 3, k)
    expected = x @ weight.dequantize().T + bias
    layer = linear(weight, bias)  # takes the weight's bytes over (reordered in place)
    assert isinstance(layer, kind)
    assert (getattr(layer, "codes", None) is not None) == (qtype == QT.Q4_K)  # Q4_K's own scales, not float16 ones
    got = layer(x)
    assert got.shape == (2, 3, 48) and got.dtype == torch.float32
    assert ((got - expected).norm() / expected.norm()) < 1e-4  # activations to about 15 bits


def test_q4_k_scales_as_the_file_has_them_are_smaller_and_exact(our_kernels):
    weight = int4_from_gguf(blocks(matrix(20, 768, seed=14), QT.Q4_K), QT.Q4_K)
    assert weight.codes.shape == (20, 48) and weight.supers.shape == (20, 6) and int(weight.codes.max()) < 64
    coded = BlockInt4Linear(weight.nibbles.clone(), weight.scale, weight.zero, None, weight.codes, weight.supers)
    plain = BlockInt4Linear(weight.nibbles.clone(), weight.scale, weight.zero, None)
    assert plain.codes is None and coded.scale is None
    x = torch.randn(5, 768)
    expected = x @ weight.dequantize().T
    error = {layer: ((layer(x) - expected).norm() / expected.norm()).item() for layer in (coded, plain)}
    assert error[coded] < 1e-4 and error[plain] < 1e-3  # float16 scales round d * sc (2^-11); the file's do not
    assert error[coded] < error[plain] / 4
    # 2.5 bytes of scales a group of 32, against 4
    assert coded.codes.numel() + 2 * coded.supers.numel() == 20 * 24 * 2.5
    with pytest.raises(ValueError, match="scale and mins, or codes and supers"):
        cpu_kernels.int4_matmul(coded.nibbles, None, None, x)
    with pytest.raises(ValueError, match="multiple of 256"):
        cpu_kernels.int4_matmul(coded.nibbles, None, None, x, codes=coded.codes[:, :40], supers=coded.supers)


def test_int4_weights_in_our_layout_dequantize_to_the_same_values(our_kernels):
    weight = int4_from_gguf(blocks(matrix(18, 64, seed=13), QT.Q4_1), QT.Q4_1)
    dense = weight.dequantize()
    layer = linear(weight)
    groups = cpu_kernels.tiled_rows(layer.nibbles, torch.arange(18), 16).view(18, 2, 16)  # in tiles of 4 rows
    q = torch.cat([groups & 0x0F, groups >> 4], dim=-1).float()  # byte i: value i (low), value i + 16 (high)
    values = q * layer.scale.float()[..., None] + layer.mins.float()[..., None]
    assert torch.equal(values.view(18, 64), dense)  # Q4_1's d and m are float16: exact
