"""Our CPU kernels (int8 activations times int4/int8 weight blocks) against float matmuls, and their build."""

import warnings

import pytest
import torch

from backends.local import cpu_kernels

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="no g++ or no AVX2 here")


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def int4_parts(n: int, k: int) -> tuple[torch.Tensor, ...]:
    """Random int4 weights in the kernel's layout, and the same as float32 [N, K]."""
    q = torch.randint(0, 16, (n, k // 32, 32), dtype=torch.uint8)
    scale = (torch.rand(n, k // 32) * 0.02 + 1e-3).half()
    mins = (-torch.rand(n, k // 32) * 0.1).half()
    nibbles = (q[..., :16] | (q[..., 16:] << 4)).reshape(n, k // 2)
    dense = (q.float() * scale.float()[..., None] + mins.float()[..., None]).view(n, k)
    return cpu_kernels.tile_(nibbles, 16), scale, mins, dense


def int5_parts(n: int, k: int) -> tuple[torch.Tensor, ...]:
    """Random int5 weights in the kernel's layout (fifth bits apart), and the same as float32 [N, K]."""
    q = torch.randint(0, 32, (n, k // 32, 32), dtype=torch.uint8)
    nibbles, scale, mins, _ = int4_parts(n, k)
    nibbles = ((q[..., :16] & 0x0F) | ((q[..., 16:] & 0x0F) << 4)).reshape(n, k // 2)
    bits = ((q >> 4).long() << torch.arange(32)).sum(-1).to(torch.int32)  # bit i: value i's fifth
    high = bits.view(torch.uint8).reshape(n, k // 8)
    dense = (q.float() * scale.float()[..., None] + mins.float()[..., None]).view(n, k)
    return cpu_kernels.tile_(nibbles, 16), cpu_kernels.tile_(high, 4), scale, mins, dense


def int8_parts(n: int, k: int) -> tuple[torch.Tensor, ...]:
    q = torch.randint(-128, 128, (n, k), dtype=torch.int8)  # -128 too: a file may hold it
    d = (torch.rand(n, k // 32) * 0.01).half()
    dense = (q.float().view(n, -1, 32) * d.float()[..., None]).view(n, k)
    return cpu_kernels.tile_(q, 32), d, dense


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize(("n", "groups"), [(1, 6), (3, 6), (4, 6), (9, 6), (14, 6), (9, 65536)])
def test_tiles_keep_each_row_and_give_it_back(n, groups):
    """Tiles of 4 rows and a last one of what is left; rows of 1 MB are reordered 4 at a time (in place)."""
    rows = torch.randint(0, 256, (n, groups * 16), dtype=torch.uint8)
    tiled = cpu_kernels.tile_(rows.clone(), 16)
    assert torch.equal(cpu_kernels.tiled_rows(tiled, torch.arange(n).flip(0), 16), rows.flip(0))
    full = n - n % 4
    if full:  # a whole tile: group 0 of its 4 rows, then group 1
        assert torch.equal(tiled[:4].reshape(groups, 4, 16), rows[:4].view(4, groups, 16).transpose(0, 1))
    if n > full:
        assert torch.equal(tiled[full:].reshape(groups, n - full, 16), rows[full:].view(n - full, groups, 16).transpose(0, 1))


def test_activations_round_to_two_int8_parts():
    x = torch.randn(3, 96) * torch.tensor([0.01, 1.0, 100.0])[:, None]
    x[1, 32:64] = 0  # an all-zero block: scale 0, values 0
    hi, lo, d, s = cpu_kernels.quantize_rows(x)
    back = ((256 * hi.float() + lo.float()).view(3, 3, 32) * d[..., None]).view(3, 96)
    unit = d.repeat_interleave(32, dim=1)  # 1/256 of hi's step, max|x| / 127 a block
    assert ((back - x).abs() <= unit * 1.01).all()  # half a unit, a whole one where lo is clamped at 127
    assert ((back - x).abs() <= unit / 2 * 1.01).float().mean() > 0.95
    assert d[1, 1] == 0 and (hi[1, 32:64] == 0).all() and (lo[1, 32:64] == 0).all() and hi.abs().max() == 127
    assert torch.allclose(s, x.view(3, 3, 32).sum(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,k,m", [(64, 256, 1), (41, 352, 5), (16, 32 * 11, 64)])  # an odd row: a tile of one
def test_int4_matmul_matches_a_float_matmul(n, k, m):
    nibbles, scale, mins, dense = int4_parts(n, k)
    x = torch.randn(m, k)
    assert relative_error(cpu_kernels.int4_matmul(nibbles, scale, mins, x), x @ dense.T) < 1e-4


@pytest.mark.parametrize("n,k,m", [(64, 256, 1), (41, 352, 5), (16, 32 * 11, 64)])
def test_int5_matmul_matches_a_float_matmul(n, k, m):
    nibbles, high, scale, mins, dense = int5_parts(n, k)
    x = torch.randn(m, k)
    assert relative_error(cpu_kernels.int4_matmul(nibbles, scale, mins, x, high), x @ dense.T) < 1e-4


@pytest.mark.parametrize("n,k,m", [(64, 256, 1), (25, 352, 7)])
def test_int8_matmul_matches_a_float_matmul(n, k, m):
    q, d, dense = int8_parts(n, k)
    x = torch.randn(m, k)
    assert relative_error(cpu_kernels.int8_matmul(q, d, x), x @ dense.T) < 1e-4


def test_an_rms_norm_applied_on_the_way_in_is_the_norm_then_the_matmul():
    k = 352
    x = torch.randn(5, k) * torch.tensor([0.01, 1.0, 30.0, 1.0, 1.0])[:, None]
    weight, eps = torch.rand(k) + 0.5, 1e-6
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight
    nibbles, scale, mins, _ = int4_parts(24, k)
    n5, high, s5, m5, _ = int5_parts(24, k)
    q, d, _ = int8_parts(24, k)
    for matmul in (lambda v, **n: cpu_kernels.int4_matmul(nibbles, scale, mins, v, **n),
                   lambda v, **n: cpu_kernels.int4_matmul(n5, s5, m5, v, high, **n),
                   lambda v, **n: cpu_kernels.int8_matmul(q, d, v, **n)):
        assert relative_error(matmul(x, norm=weight, eps=eps), matmul(normed)) < 1e-5
    with pytest.raises(ValueError, match=r"RMSNorm weight as contiguous float32 \[352\]"):
        cpu_kernels.int8_matmul(q, d, x, norm=weight[:100], eps=eps)


def test_a_row_gives_the_same_bits_alone_and_in_a_batch():
    nibbles, scale, mins, _ = int4_parts(47, 512)
    q, d, _ = int8_parts(47, 512)
    n5, high, s5, m5, _ = int5_parts(47, 512)
    x = torch.randn(9, 512)  # tiles of 2 weight rows by 4 activation rows, then 2 by 1, and 1 by 4 and 1 by 1
    for matmul in (lambda v: cpu_kernels.int4_matmul(nibbles, scale, mins, v), lambda v: cpu_kernels.int8_matmul(q, d, v),
                   lambda v: cpu_kernels.int4_matmul(n5, s5, m5, v, high)):
        together = matmul(x)
        assert all(torch.equal(matmul(x[i : i + 1].contiguous())[0], together[i]) for i in (0, 4, 8))


def test_the_library_is_built_once_into_the_cache_and_loads_libgomp_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENTRAIL_KERNEL_CACHE", str(tmp_path))
    cpu_kernels.library.cache_clear()
    try:
        assert cpu_kernels.available()
        built = list(tmp_path.glob("cpu_kernels-*.so"))
        assert len(built) == 1 and not [p for p in tmp_path.iterdir() if p.is_dir()]  # no build folder left
    finally:
        cpu_kernels.library.cache_clear()
    gomp = {line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line}
    assert len(gomp) == 1  # one OpenMP runtime: ours and torch's threads are the same


def test_without_a_compiler_torchs_kernels_run_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENTRAIL_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setenv("TOKENTRAIL_CPU_KERNELS", "tokentrail")
    cpu_kernels.library.cache_clear()
    try:
        with pytest.warns(UserWarning, match="CPU kernels are off .*no C\\+\\+ compiler"):
            assert cpu_kernels.chosen() == "torch"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cpu_kernels.chosen() == "torch"  # cached: said once
        assert list(tmp_path.iterdir()) == []
    finally:
        cpu_kernels.library.cache_clear()


def test_a_broken_build_names_the_compilers_complaint(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENTRAIL_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "FLAGS", [*cpu_kernels.FLAGS, "-fno-such-flag"])
    cpu_kernels.library.cache_clear()
    try:
        with pytest.warns(UserWarning, match="failed: .*no-such-flag"):
            assert cpu_kernels.library() is None
        assert not list(tmp_path.glob("*.so"))
    finally:
        cpu_kernels.library.cache_clear()


def test_by_default_ours_run_on_avx2_and_on_avx512(tmp_path, monkeypatch):
    monkeypatch.delenv("TOKENTRAIL_CPU_KERNELS", raising=False)
    monkeypatch.setenv("TOKENTRAIL_KERNEL_CACHE", str(tmp_path))
    cpu_kernels.library.cache_clear()
    try:
        for capability in ("AVX512", "AVX2"):
            monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
            assert cpu_kernels.chosen() == "tokentrail"
    finally:
        cpu_kernels.library.cache_clear()


def test_the_setting_picks_the_kernels_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.setenv("TOKENTRAIL_CPU_KERNELS", "torch")
    assert cpu_kernels.chosen() == "torch"
    monkeypatch.setenv("TOKENTRAIL_CPU_KERNELS", "tokentrail")
    assert cpu_kernels.chosen() == "tokentrail"
    monkeypatch.setenv("TOKENTRAIL_CPU_KERNELS", "fastest")
    with pytest.raises(ValueError, match="TOKENTRAIL_CPU_KERNELS='fastest' is not one of auto, tokentrail, torch"):
        cpu_kernels.chosen()



def test_avx512_vnni_and_avx2_give_the_same_bits():
    lib = cpu_kernels.library()
    if not lib.tt_use_vnni(1):
        pytest.skip("no AVX-512 VNNI here")
    nibbles, scale, mins, _ = int4_parts(32, 256)
    q, d, _ = int8_parts(32, 256)
    n5, high, s5, m5, _ = int5_parts(32, 256)
    x = torch.randn(6, 256)
    run = lambda: (cpu_kernels.int4_matmul(nibbles, scale, mins, x), cpu_kernels.int8_matmul(q, d, x),  # noqa: E731
                   cpu_kernels.int4_matmul(n5, s5, m5, x, high))
    try:
        with_vnni = run()
        lib.tt_use_vnni(0)
        with_avx2 = run()
    finally:
        cpu_kernels.instruction_set()  # back to this CPU's choice
    assert all(torch.equal(a, b) for a, b in zip(with_vnni, with_avx2))
