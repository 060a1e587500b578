"""Both file formats, both families: the same weights give the same logits, and match transformers."""

import numpy as np
import pytest
import torch
from gguf.quants import dequantize, quantize

from backends.local.loader import load_model
from tests.conftest import GOLDENS, TINY_FAMILIES
from tests.fixtures.tiny_models import (
    GGMLQuantizationType,
    random_weights,
    tiny_config,
    tiny_tokenizer,
    write_gguf,
    write_hf_folder,
)

FAMILIES = list(TINY_FAMILIES)


def forward(path, ids):
    loaded = load_model(path)
    with torch.inference_mode():
        return loaded.model(torch.tensor([ids]))[0]


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDENS / "tiny.npz")


@pytest.mark.parametrize("family", FAMILIES)
def test_safetensors_matches_transformers(tiny_models, golden, family):
    folder, _, _ = tiny_models[family]
    logits = forward(folder, golden["ids"].tolist())
    assert torch.allclose(logits, torch.from_numpy(golden[family]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_gguf_matches_safetensors(tiny_models, golden, family):
    folder, gguf, _ = tiny_models[family]
    ids = golden["ids"].tolist()
    assert (forward(folder, ids) - forward(gguf, ids)).abs().max() < 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_from_gguf_equals_tokenizer_json(tiny_models, family):
    folder, gguf, _ = tiny_models[family]
    a, b = load_model(folder).tokenizer, load_model(gguf).tokenizer
    for text in ["the quick brown fox", "def add(a, b):\n    return 42", "<|im_start|>user\nhi<|im_end|>", "ünïcode 😀"]:
        assert a.encode(text) == b.encode(text)
        assert b.decode(b.encode(text)) == text
    assert a.eos_token_ids == b.eos_token_ids


def test_sharded_folder(tmp_path, tiny_models, golden):
    tokenizer = tiny_tokenizer()
    cfg = tiny_config("llama", tokenizer.get_vocab_size(with_added_tokens=True))
    folder = write_hf_folder(tmp_path / "sharded", cfg, random_weights(cfg), tokenizer, shards=3)
    assert len(list(folder.glob("*.safetensors"))) == 3
    assert torch.allclose(forward(folder, golden["ids"].tolist()), torch.from_numpy(golden["llama"]), atol=1e-4)


@pytest.mark.parametrize(
    "quant",
    [
        GGMLQuantizationType.F16,
        GGMLQuantizationType.BF16,
        GGMLQuantizationType.Q8_0,
        GGMLQuantizationType.Q5_1,
        GGMLQuantizationType.Q5_0,
        GGMLQuantizationType.Q4_1,
        GGMLQuantizationType.Q4_0,
    ],
)
def test_quantized_gguf_dequantizes_exactly(tmp_path, golden, quant):
    tokenizer = tiny_tokenizer()
    cfg = tiny_config("qwen2", tokenizer.get_vocab_size(with_added_tokens=True))
    weights = random_weights(cfg)
    gguf = write_gguf(tmp_path / "q.gguf", cfg, weights, tokenizer, quant=quant)
    loaded = load_model(gguf).model
    original = weights["model.layers.1.mlp.down_proj.weight"].numpy()
    expected = dequantize(quantize(original, quant), quant).reshape(original.shape)
    assert np.array_equal(loaded.layers[1].feed_forward.w2.weight.numpy(), expected)
    with torch.inference_mode():
        logits = loaded(torch.tensor([golden["ids"].tolist()]))[0]
    reference = torch.from_numpy(golden["qwen2"])
    relative = ((logits - reference).norm() / reference.norm()).item()
    assert relative < 0.25, f"{quant.name}: relative logit error {relative:.3f}"


def test_dtype_option(tiny_models, golden):
    folder, _, _ = tiny_models["llama"]
    loaded = load_model(folder, dtype="bfloat16")
    assert loaded.model.tok_embeddings.weight.dtype == torch.bfloat16
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([golden["ids"].tolist()]))[0]
    assert logits.dtype == torch.float32
    assert (logits - torch.from_numpy(golden["llama"])).abs().max() < 0.1
    with pytest.raises(ValueError, match="dtype 'int3'"):
        load_model(folder, dtype="int3")
