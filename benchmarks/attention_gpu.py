"""Our Triton attention kernels beside torch's scaled_dot_product_attention, on one CUDA GPU.

    python benchmarks/attention_gpu.py [--quick]

First checks correctness in bf16 against the float32 reference, then prints prefill TFLOP/s
(causal and not, head dims 64 and 128, T from 1k to 16k) beside torch's flash backend, and
decode GB/s of KV read (context 1k to 32k, batch 1 and 16) beside the same torch call and
the H200's 4.8 TB/s. Meant to finish in a few minutes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HBM_TBPS = 4.8  # H200


def check_correctness() -> None:
    from backends.local.kernels import decode_attention, decode_attention_ref, prefill_attention, prefill_attention_ref

    g = torch.Generator(device="cuda").manual_seed(0)
    rand = lambda *s: torch.randn(*s, device="cuda", generator=g, dtype=torch.bfloat16)  # noqa: E731
    worst = 0.0
    for tq, tk, hq, hkv, d, causal in [(1, 1, 8, 8, 64, True), (65, 130, 12, 4, 128, True), (1000, 1000, 8, 2, 64, True),
                                       (777, 2049, 16, 16, 128, True), (513, 513, 4, 4, 80, False)]:
        q, k, v = rand(2, hq, tq, d), rand(2, hkv, tk, d), rand(2, hkv, tk, d)
        ours, reference = prefill_attention(q, k, v, causal=causal), prefill_attention_ref(q, k, v, causal)
        err = (ours.float() - reference.float()).abs().max().item()
        worst = max(worst, err)
        assert err < 2e-2, f"prefill {tq}x{tk} hq={hq} hkv={hkv} d={d}: max error {err}"
    for b, hq, hkv, t, d in [(1, 32, 8, 4097, 128), (16, 8, 8, 1000, 64), (3, 12, 4, 777, 128)]:
        q, k, v = rand(b, hq, d), rand(b, hkv, t, d), rand(b, hkv, t, d)
        lens = torch.randint(1, t + 1, (b,), device="cuda", dtype=torch.int32)
        err = (decode_attention(q, k, v, lens).float() - decode_attention_ref(q, k, v, lens).float()).abs().max().item()
        worst = max(worst, err)
        assert err < 2e-2, f"decode b={b} t={t}: max error {err}"
    print(f"correctness on CUDA in bf16: ok (worst max abs error {worst:.2e})")


def bench_ms(fn) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, warmup=25, rep=100)


def prefill_table(lengths: list[int]) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from backends.local.kernels import prefill_attention

    print("\nprefill (bf16), TFLOP/s")
    print(f"{'causal':>6} {'D':>4} {'T':>6} {'B x H':>7} {'ours':>8} {'torch flash':>12} {'ratio':>6}")
    for causal in (True, False):
        for d in (64, 128):
            heads = 2048 // d
            for t in lengths:
                batch = max(1, 16384 // t)
                q, k, v = (torch.randn(batch, heads, t, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
                flops = 4 * batch * heads * t * t * d * (0.5 if causal else 1.0)
                ours = bench_ms(lambda: prefill_attention(q, k, v, causal=causal))
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    ref = bench_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                print(f"{str(causal):>6} {d:>4} {t:>6} {f'{batch}x{heads}':>7} {flops / ours / 1e9:8.1f} "
                      f"{flops / ref / 1e9:12.1f} {ref / ours:6.2f}")


def decode_table(contexts: list[int]) -> None:
    from backends.local.kernels import decode_attention

    print("\ndecode (bf16, 32 query heads, 8 KV heads, D 128), GB/s of KV read")
    print(f"{'batch':>5} {'context':>8} {'ours':>8} {'torch sdpa':>11} {'% of HBM':>9}")
    for batch in (1, 16):
        for ctx in contexts:
            q = torch.randn(batch, 32, 128, device="cuda", dtype=torch.bfloat16)
            k, v = (torch.randn(batch, 8, ctx, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
            lens = torch.full((batch,), ctx, device="cuda", dtype=torch.int32)
            nbytes = 2 * k.numel() * k.element_size()
            ours = bench_ms(lambda: decode_attention(q, k, v, lens))
            ref = bench_ms(lambda: F.scaled_dot_product_attention(q[:, :, None], k, v, enable_gqa=True))
            gbps = nbytes / ours / 1e6
            print(f"{batch:>5} {ctx:>8} {gbps:8.0f} {nbytes / ref / 1e6:11.0f} {100 * gbps / (HBM_TBPS * 1000):8.0f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer sizes")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("attention_gpu.py needs a CUDA GPU; on the CPU the tests check the kernels under TRITON_INTERPRET=1")
    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__} · triton {__import__('triton').__version__}")
    check_correctness()
    prefill_table([1024, 4096] if args.quick else [1024, 2048, 4096, 8192, 16384])
    decode_table([1024, 8192] if args.quick else [1024, 4096, 8192, 16384, 32768])


if __name__ == "__main__":
    main()
