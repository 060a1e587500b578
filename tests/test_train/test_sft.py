"""LoRA and supervised fine-tuning on tiny random-weight models: what is learnt, saved, loaded and refused."""

import json

import pytest
import torch

from backends import BackendError, GenerationRequest, Message, SamplingParams, load_backend
from backends.local import lora
from tests.fixtures.tiny_models import GGMLQuantizationType as QT
from tests.fixtures.tiny_models import random_weights, tiny_config, tiny_tokenizer, write_gguf
from train.sft import SFTConfig, sft

PAIRS = [("sky", "blue"), ("grass", "green"), ("snow", "white"), ("coal", "black")]


def tiny(tmp_path, family="qwen2", quant=QT.Q4_0, layers=None):
    tokenizer = tiny_tokenizer()
    config = tiny_config(family, tokenizer.get_vocab_size(with_added_tokens=True))
    if layers is not None:
        config["num_hidden_layers"] = layers
    return write_gguf(tmp_path / f"{family}-{layers}.gguf", config, random_weights(config), tokenizer, quant=quant)


def examples(path, pairs=PAIRS, repeat=4):
    lines = [json.dumps({"messages": [{"role": "user", "content": f"color of {a}?"}, {"role": "assistant", "content": b}]})
             for a, b in pairs * repeat]
    path.write_text("\n".join(lines))
    return path


def answer(backend, thing):
    request = GenerationRequest(messages=[Message(role="user", content=f"color of {thing}?")],
                                sampling=SamplingParams(temperature=0, max_tokens=8))
    return backend.generate(request).text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sft")
    model = tiny(tmp)
    backend = load_backend("local", model=str(model), precision="exact")
    before = [answer(backend, thing) for thing, _ in PAIRS]
    result = sft(backend, examples(tmp / "data.jsonl"), tmp / "adapter",
                 SFTConfig(epochs=40, lr=1e-2, holdout=0.0, accumulate=4))
    return model, backend, result, before


def test_a_tiny_model_learns_a_toy_mapping(trained):
    _, backend, result, before = trained
    assert result.steps[-1].loss < 0.05 * result.steps[0].loss
    assert [answer(backend, thing) for thing, _ in PAIRS] == [color for _, color in PAIRS] != before
    log = [json.loads(line) for line in open(f"{result.adapter}/log.jsonl")]
    assert len(log) == len(result.steps) and log[0]["tokens"] > 0 and log[-1]["tokens_per_s"] > 0


def test_the_adapter_loads_in_either_precision_and_switches_off(trained):
    model, _, result, before = trained
    for precision in ("exact", "fast"):  # fast: the same adapter over int4 projections
        backend = load_backend("local", model=str(model), precision=precision, adapter=result.adapter)
        assert [answer(backend, thing) for thing, _ in PAIRS] == [color for _, color in PAIRS], precision
        assert backend.model_name.endswith("+adapter")  # traces and the status bar name the adapter
    with lora.disabled(backend.loaded.model):
        backend.loaded.model.snapshots.clear()
        backend.loaded.model.cached = []
        assert [answer(backend, thing) for thing, _ in PAIRS] == before


def test_an_adapter_refuses_another_model(trained, tmp_path):
    _, _, result, _ = trained
    other = tiny(tmp_path, family="llama", layers=3)
    with pytest.raises(BackendError, match="was trained on .* this model is .* Load it onto the model it was trained on"):
        load_backend("local", model=str(other), adapter=result.adapter)
    with pytest.raises(BackendError, match="not an adapter folder"):
        load_backend("local", model=str(other), adapter=str(tmp_path))


def test_bad_lines_are_reported_with_their_numbers_and_skipped(tmp_path):
    model = tiny(tmp_path)
    good = {"messages": [{"role": "user", "content": "color of sky?"}, {"role": "assistant", "content": "blue"}]}
    lines = [json.dumps(good), "{not json", json.dumps({"prompt": "x"}),
             json.dumps({"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}),
             json.dumps({"messages": [{"role": "user", "content": "x"}]}),
             json.dumps({"messages": [{"role": "user", "content": "long " * 400}, {"role": "assistant", "content": "y"}]}),
             json.dumps({"messages": [{"role": "wizard", "content": "x"}]})]
    (tmp_path / "d.jsonl").write_text("\n".join(lines))
    backend = load_backend("local", model=str(model), precision="exact")
    result = sft(backend, tmp_path / "d.jsonl", tmp_path / "a", SFTConfig(holdout=0.0, max_tokens=256))
    assert result.trained_examples == 1
    problems = "\n".join(result.skipped)
    for needle in ("line 2: not JSON", 'line 3: needs "messages"', "line 4: an assistant message cannot follow the start",
                   "line 5: no assistant message", "line 6: ", "over the limit of 256", "line 7: field"):
        assert needle in problems, (needle, problems)


def test_training_needs_the_exact_engine_and_some_data(tmp_path):
    model = tiny(tmp_path)
    with pytest.raises(ValueError, match="precision='exact'"):
        sft(load_backend("local", model=str(model)), examples(tmp_path / "d.jsonl"), tmp_path / "a")
    (tmp_path / "empty.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="no usable examples .*line 1: not JSON"):
        sft(load_backend("local", model=str(model), precision="exact"), tmp_path / "empty.jsonl", tmp_path / "a")


def test_a_new_adapter_changes_nothing_until_trained(tmp_path):
    backend = load_backend("local", model=str(tiny(tmp_path)), precision="exact")
    ids = torch.tensor([[5, 17, 100, 3]])
    before = backend.loaded.model(ids)
    lora.attach(backend.loaded.model, lora.LoRAConfig(rank=4))
    assert torch.equal(backend.loaded.model(ids), before)


def test_the_command_line_trains_then_uses_the_adapter(tmp_path):
    from click.testing import CliRunner

    from cli import main

    model = tiny(tmp_path)
    data = examples(tmp_path / "data.jsonl", repeat=8)
    runner = CliRunner()
    trained = runner.invoke(main, ["train", "sft", str(data), "-o", str(tmp_path / "ad"), "--model", str(model),
                                   "--epochs", "20", "--lr", "0.01"])
    assert trained.exit_code == 0, trained.output
    assert "loss " in trained.output and "adapter in" in trained.output and any(c in trained.output for c in "▁▂▃")
    generated = runner.invoke(main, ["generate", "color of grass?", "--model", str(model), "--adapter",
                                     str(tmp_path / "ad"), "-t", "0", "-n", "6"])
    assert generated.exit_code == 0 and "green" in generated.output, generated.output
    refused = runner.invoke(main, ["generate", "x", "-b", "scripted", "--adapter", str(tmp_path / "ad")])
    assert refused.exit_code == 2 and "applies to the local backend" in refused.output


@pytest.mark.parametrize("source", ["qwen2 gguf", "llama folder"])
def test_a_merged_model_gives_the_adapter_models_logits(tmp_path, source):
    from tests.fixtures.tiny_models import write_hf_folder
    from train.merge import merge

    if source == "qwen2 gguf":
        model = tiny(tmp_path, family="qwen2", quant=QT.F32)
    else:  # Llama 3 RoPE scaling, which a GGUF states only as a table of frequencies
        tokenizer = tiny_tokenizer()
        config = tiny_config("llama", tokenizer.get_vocab_size(with_added_tokens=True))
        model = write_hf_folder(tmp_path / "llama", config, random_weights(config), tokenizer)
    sft(load_backend("local", model=str(model), precision="exact"), examples(tmp_path / "d.jsonl"), tmp_path / "ad",
        SFTConfig(epochs=3, lr=1e-2, holdout=0.0))
    adapted = load_backend("local", model=str(model), precision="exact", adapter=str(tmp_path / "ad"))
    merged = load_backend("local", model=str(merge(adapted, tmp_path / "merged")), precision="exact")
    ids = [5, 17, 100, 3, 250, 42, 7]
    assert torch.allclose(merged.logits(ids), adapted.logits(ids), atol=1e-4)
    assert answer(merged, "sky") == answer(adapted, "sky")
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = hf(torch.tensor([ids])).logits[0]
    assert torch.allclose(theirs, adapted.logits(ids), atol=1e-4)
