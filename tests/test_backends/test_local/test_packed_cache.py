"""Converted models kept on disk: a second load maps them, a bad entry is rebuilt, a full disk loses nothing."""

import errno
import warnings
import zipfile

import pytest
import torch

from backends.local import loader, packed_cache
from backends.local.loader import load_model
from backends.local.quant_layers import GGUFRows
from tests.fixtures.tiny_models import GGMLQuantizationType as QT
from tests.fixtures.tiny_models import random_weights, tiny_config, tiny_tokenizer, write_gguf

IDS = torch.tensor([[5, 17, 100, 3, 250, 42, 7, 9]])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "packed"
    monkeypatch.setenv("TOKENTRAIL_PACKED_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    tokenizer = tiny_tokenizer()
    cfg = tiny_config("qwen2", tokenizer.get_vocab_size(with_added_tokens=True))
    return write_gguf(tmp_path_factory.mktemp("gguf") / "qwen2.gguf", cfg, random_weights(cfg), tokenizer, quant=QT.Q8_0)


def logits(loaded):
    with torch.inference_mode():
        return loaded.model(IDS)


def entries(folder):
    return sorted(p.name for p in folder.glob("*.pt"))


def no_conversion(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("built the model from the file although a converted copy was on disk")

    monkeypatch.setattr(loader, "Transformer", refuse)


def test_a_second_load_maps_the_converted_model_instead_of_converting(cache, gguf, monkeypatch):
    first = load_model(gguf, precision="fast")
    assert len(entries(cache)) == 1
    no_conversion(monkeypatch)
    second = load_model(gguf, precision="fast")
    assert torch.equal(logits(first), logits(second))
    rows = [m for m in second.model.modules() if isinstance(m, GGUFRows)]
    assert rows and all(r.raw.shape[0] == second.config.vocab_size for r in rows)  # the rows come from the file again
    with zipfile.ZipFile(cache / entries(cache)[0]) as entry:  # torch.save's format: one record per storage
        largest = max(info.file_size for info in entry.infolist())
    assert largest < rows[0].raw.nbytes  # the rows are not copied into the entry


def test_another_cpu_or_precision_gets_its_own_entry(cache, gguf, monkeypatch):
    load_model(gguf, precision="fast")
    monkeypatch.setattr(loader.torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # another kernel choice
    load_model(gguf, precision="fast")
    # the file's entry for the other CPU replaced the first: one entry per file
    assert len(entries(cache)) == 1
    no_conversion(monkeypatch)
    load_model(gguf, precision="fast")


@pytest.mark.parametrize("damage", ["truncated", "foreign", "another model"])
def test_a_bad_entry_is_rebuilt_not_trusted(cache, gguf, tmp_path, damage):
    reference = logits(load_model(gguf, precision="fast"))
    entry = cache / entries(cache)[0]
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    elif damage == "foreign":  # a pickle that would run code if it were loaded without weights_only
        torch.save({"run": warnings.warn}, entry)
    else:
        other = tiny_config("qwen2", tiny_tokenizer().get_vocab_size(with_added_tokens=True)) | {"num_hidden_layers": 1}
        other_file = write_gguf(tmp_path / "other.gguf", other, random_weights(other), tiny_tokenizer(), quant=QT.Q8_0)
        (cache / entries(cache)[0]).unlink()
        load_model(other_file, precision="fast")
        (cache / entries(cache)[0]).rename(entry)
    with pytest.warns(RuntimeWarning, match="could not be used .* converting the file again"):
        again = load_model(gguf, precision="fast")
    assert torch.equal(logits(again), reference)
    assert entry.is_file()  # written again, whole


def test_a_full_disk_leaves_no_partial_entry_and_the_model_loads(cache, gguf, monkeypatch):
    def full(obj, path):
        with open(path, "wb") as f:
            f.write(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(packed_cache.torch, "save", full)
    with pytest.warns(RuntimeWarning, match="could not keep the converted model .*No space left"):
        loaded = load_model(gguf, precision="fast")
    assert logits(loaded).shape[-1] == loaded.config.vocab_size
    assert [p.name for p in cache.iterdir()] == ["hashes.json"]


def test_the_cache_can_be_turned_off_and_exact_precision_never_uses_it(cache, gguf, monkeypatch):
    load_model(gguf, precision="exact")
    assert not entries(cache)
    monkeypatch.setenv("TOKENTRAIL_PACKED_CACHE", "0")
    load_model(gguf, precision="fast")
    assert not cache.exists() or not entries(cache)
