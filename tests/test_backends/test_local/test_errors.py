"""Bad input gives a clear error that names the file or the limit."""

import json
import shutil

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter

from backends import BackendError, GenerationRequest, Message, load_backend
from backends.local.config import ModelLoadError
from backends.local.loader import load_model
from tests.fixtures.tiny_models import random_weights, tiny_config, tiny_tokenizer, write_gguf


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="nope.gguf: no such"):
        load_model(tmp_path / "nope.gguf")
    with pytest.raises(BackendError, match="no such file or folder"):
        load_backend("local", model=str(tmp_path / "missing.gguf"))


def test_truncated_gguf(tmp_path, tiny_models):
    _, gguf, _ = tiny_models["llama"]
    data = gguf.read_bytes()
    for cut in (len(data) // 2, 200, 10):
        broken = tmp_path / f"cut{cut}.gguf"
        broken.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError, match=f"cut{cut}.gguf: .*(truncated|corrupt)"):
            load_model(broken)


def test_corrupt_gguf(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match="junk.gguf: not a readable GGUF file"):
        load_model(junk)


def test_unknown_architecture(tmp_path):
    tokenizer = tiny_tokenizer()
    cfg = tiny_config("llama", tokenizer.get_vocab_size(with_added_tokens=True))
    gguf = write_gguf(tmp_path / "mamba.gguf", cfg, random_weights(cfg), tokenizer, arch="mamba")
    with pytest.raises(ModelLoadError, match="mamba.gguf: unsupported architecture 'mamba'; supported: gemma3, gemma3_text, "
                                             "llama, mistral, phi3, qwen2, qwen3"):
        load_model(gguf)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg | {"model_type": "gpt_neox"}))
    with pytest.raises(ModelLoadError, match="unsupported architecture 'gpt_neox'"):
        load_model(folder)


def test_a_family_key_that_is_missing_is_named(tmp_path):
    tokenizer = tiny_tokenizer()
    cfg = tiny_config("gemma3", tokenizer.get_vocab_size(with_added_tokens=True))
    weights = random_weights(cfg)
    gguf = write_gguf(tmp_path / "gemma.gguf", cfg | {"sliding_window": None}, weights, tokenizer)
    with pytest.raises(ModelLoadError, match="gemma.gguf: GGUF metadata lacks 'gemma3.attention.sliding_window'"):
        load_model(gguf)


def test_gemma2_attention_softcapping_is_refused_by_name(tmp_path, tiny_models):
    folder = shutil.copytree(tiny_models["gemma3"][0], tmp_path / "gemma2ish")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"attn_logit_softcapping": 50.0}))
    with pytest.raises(ModelLoadError, match="attention logit soft-capping .* not supported"):
        load_model(folder)


def test_unsupported_quantization(tmp_path):
    path = tmp_path / "q8k.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 292), dtype=np.uint8), raw_dtype=GGMLQuantizationType.Q8_K)
    writer.add_string("tokenizer.ggml.model", "gpt2")
    writer.add_array("tokenizer.ggml.tokens", ["a", "b"])
    for key, value in [("llama.attention.head_count", 4), ("llama.embedding_length", 256), ("llama.block_count", 1),
                       ("llama.feed_forward_length", 64), ("llama.context_length", 64)]:
        writer.add_uint32(key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    problem = "q8k.gguf: tensor token_embd.weight uses quantization Q8_K, which cannot be dequantized"
    with pytest.raises(ModelLoadError, match=problem):
        load_model(path)


def test_missing_metadata_and_tensors(tmp_path, tiny_models):
    path = tmp_path / "empty.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelLoadError, match="empty.gguf: GGUF metadata lacks 'tokenizer.ggml.tokens'"):
        load_model(path)
    folder = tmp_path / "partial"
    shutil.copytree(tiny_models["llama"][0], folder)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="partial: weights do not match a llama model: missing 1 tensors .*up_proj"):
        load_model(folder)


def test_hf_folder_problems(tmp_path, tiny_models):
    folder = tmp_path / "bad"
    shutil.copytree(tiny_models["qwen2"][0], folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json: not valid JSON"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(ModelLoadError, match="config.json lacks 'num_attention_heads'"):
        load_model(folder)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_models["qwen2"][0] / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ModelLoadError, match="pickled weights .* never loaded"):
        load_model(pickled)
    (folder / "config.json").write_text((tiny_models["qwen2"][0] / "config.json").read_text())
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="model.safetensors: not a readable safetensors file"):
        load_model(folder)


def test_prompt_longer_than_context_window(tiny_models):
    backend = load_backend("local", model=str(tiny_models["llama"][0]))
    assert backend.context_window == 256
    request = GenerationRequest(messages=[Message(role="user", content="the quick brown fox " * 200)])
    with pytest.raises(BackendError, match=r"the prompt is \d+ tokens; the context window of .* is 256"):
        backend.generate(request)
    with pytest.raises(BackendError, match="exceed the context window of 256"):
        backend.logits(list(range(300)))
    with pytest.raises(ValueError, match="token ids must lie in"):
        backend.logits([10_000])


def test_hub_repo_id_offline_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(BackendError, match="could not fetch hf:someorg/some-model from the Hugging Face Hub.*Offline"):
        load_backend("local", model="someorg/some-model")


def test_a_multimodal_checkpoint_says_what_loads_instead(tmp_path, tiny_models):
    folder = shutil.copytree(tiny_models["gemma3"][0], tmp_path / "gemma3-4b-it")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": config, "vision_config": {}}))
    with pytest.raises(ModelLoadError, match="a multimodal checkpoint \\(gemma3\\); its text model loads from a GGUF file"):
        load_model(folder)
