"""Fast mode's quality against exact mode, teacher-forced on real text.

Two real-behaving models: SmolLM2 as shipped (Q4_1, Q8_0 embeddings, llama family), and
SmolLM2's weights rewritten as a qwen2-family GGUF with the mix of types that llama.cpp's
Q4_K_M files carry (Q4_K, Q4_0, Q4_1, Q5_0, Q8_0; QKV biases; NEOX RoPE layout).
"""

import math
from pydoc_data.topics import topics

import pytest
import torch

from backends import load_backend
from backends.local import cpu_kernels
from backends.local.quant import int4_kernel_is_fast
from tests.fixtures.tiny_models import write_smollm2_as_qwen2

pytestmark = pytest.mark.model

TOKENS, WINDOW = 2048, 512


def real_text() -> str:
    """Python's reference documentation, as every CPython ships it: prose, a little code."""
    return "\n\n".join(topics[name] for name in ("execmodel", "exceptions", "naming", "objects", "import"))


def quality(exact, fast) -> tuple[float, float, float]:
    """(perplexity exact, perplexity fast, share of positions whose top-1 token agrees)."""
    ids = exact.tokenizer.encode(real_text())[:TOKENS]
    assert len(ids) == TOKENS
    nll = {"exact": 0.0, "fast": 0.0}
    agree = total = 0
    for start in range(0, TOKENS, WINDOW):
        window = ids[start : start + WINDOW]
        targets = torch.tensor(window[1:])
        top = {}
        for name, backend in (("exact", exact), ("fast", fast)):
            logprobs = backend.logits(window)[:-1].log_softmax(-1)
            nll[name] -= logprobs.gather(1, targets[:, None]).sum().item()
            top[name] = logprobs.argmax(-1)
        agree += int((top["exact"] == top["fast"]).sum())
        total += len(targets)
    return math.exp(nll["exact"] / total), math.exp(nll["fast"] / total), agree / total


@pytest.fixture(scope="module")
def smollm2_as_qwen2(tmp_path_factory):
    return write_smollm2_as_qwen2(tmp_path_factory.mktemp("qwen2") / "smollm2-as-qwen2-q4_k_m.gguf")


def test_fast_mode_on_smollm2(smollm2, smollm2_exact):
    assert smollm2.loaded.precision == "fast" and smollm2_exact.loaded.precision == "exact"
    ppl_exact, ppl_fast, agreement = quality(smollm2_exact, smollm2)
    assert ppl_exact < 30  # the text is real: the model predicts it
    assert abs(ppl_fast / ppl_exact - 1) < 0.02, (ppl_exact, ppl_fast)
    assert agreement >= 0.97, agreement


@pytest.mark.parametrize("kernels", ["torch", "tokentrail"])
def test_fast_mode_on_a_qwen2_family_q4_k_m_file(smollm2_as_qwen2, kernels, monkeypatch):
    if kernels == "tokentrail" and not cpu_kernels.available():
        pytest.skip("our CPU kernels do not run here")
    monkeypatch.setenv("TOKENTRAIL_CPU_KERNELS", kernels)
    exact = load_backend("local", model=str(smollm2_as_qwen2), precision="exact")
    fast = load_backend("local", model=str(smollm2_as_qwen2))
    assert exact.loaded.config.family == "qwen2" and exact.loaded.config.qkv_bias
    if kernels == "tokentrail":  # Q5_0 as int5 groups on ours, int8 rows on torch's
        assert set(fast.loaded.summary.counts()) == {"int4", "int8", "int4+rows", "int5"}
    else:  # torch's int4 kernel where it is fast (AVX-512), else int8 rows
        expected = {"int4", "int8", "int4+rows"} if int4_kernel_is_fast() else {"int8", "int8+rows"}
        assert set(fast.loaded.summary.counts()) == expected
    ppl_exact, ppl_fast, agreement = quality(exact, fast)
    assert ppl_exact < 40
    assert abs(ppl_fast / ppl_exact - 1) < 0.02, (ppl_exact, ppl_fast)
    rows = "int8+rows" in fast.loaded.summary.counts()  # int4 blocks requantized to a scale a row: 96.3% measured
    assert agreement >= (0.95 if rows else 0.97), agreement
