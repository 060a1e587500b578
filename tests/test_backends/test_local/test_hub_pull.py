"""`tokentrail pull hf:OWNER/REPO[:FILE]` against a local server that speaks the Hub's API, never the real Hub."""

import hashlib

import pytest

from backends.local import hub_pull, model_cache
from backends.local.config import ModelLoadError
from tests.fixtures.fake_hub import FakeHub, serve

GGUF = b"GGUF" + bytes(range(256)) * 64


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # conftest keeps every other test offline
    fake = FakeHub({
        "someone/one-gguf": {"README.md": b"# model", "model-q4_k_m.gguf": GGUF},
        "someone/many-ggufs": {"a-q4_0.gguf": GGUF, "a-q8_0.gguf": GGUF + b"8", "README.md": b"#"},
        "someone/safetensors": {"config.json": b"{}", "model.safetensors": b"st", "tokenizer.json": b"{}",
                                "pytorch_model.bin": b"pickle"},
        "someone/nothing": {"README.md": b"#"},
    }, lfs={"model-q4_k_m.gguf", "a-q4_0.gguf", "a-q8_0.gguf"})
    with serve(fake) as running:
        monkeypatch.setenv("HF_ENDPOINT", running.url)
        yield running


def test_a_repository_with_one_gguf_pulls_it(hub):
    path = model_cache.pull("hf:someone/one-gguf")
    assert path.read_bytes() == GGUF and path.name == "model-q4_k_m.gguf"
    assert model_cache.resolve("hf:someone/one-gguf") == path


def test_a_named_file_is_pulled_and_then_used_offline(hub, monkeypatch):
    path = model_cache.pull("hf:someone/many-ggufs:a-q8_0.gguf")
    assert path.read_bytes() == GGUF + b"8"
    gets = len(hub.requests)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert model_cache.pull("hf:someone/many-ggufs:a-q8_0.gguf") == path and len(hub.requests) == gets


def test_several_ggufs_and_no_file_lists_them(hub):
    with pytest.raises(ModelLoadError, match="has 2 GGUF files; name the one to pull:\n  hf:someone/many-ggufs:a-q4_0.gguf\n"
                                             "  hf:someone/many-ggufs:a-q8_0.gguf"):
        model_cache.pull("hf:someone/many-ggufs")


def test_a_safetensors_repository_comes_as_a_folder_without_pickles(hub):
    folder = model_cache.pull("hf:someone/safetensors")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]


def test_an_interrupted_download_resumes_where_it_stopped(hub, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 1000)  # 10 MB chunks by default
    hub.cut_after["model-q4_k_m.gguf"] = 5000
    try:
        path = model_cache.pull("hf:someone/one-gguf")
    except ModelLoadError:  # the library may give up on the first try; the next pull resumes
        path = model_cache.pull("hf:someone/one-gguf")
    assert path.read_bytes() == GGUF
    assert ("GET", "model-q4_k_m.gguf", "bytes=5000-") in hub.requests


def test_a_corrupt_download_is_removed_not_loaded(hub):
    hub.corrupt.add("model-q4_k_m.gguf")
    with pytest.raises(ModelLoadError, match=f"does not match the Hub's {hashlib.sha256(GGUF).hexdigest()}.*removed"):
        model_cache.pull("hf:someone/one-gguf")
    hub.corrupt.clear()
    assert model_cache.pull("hf:someone/one-gguf").read_bytes() == GGUF


@pytest.mark.parametrize("spec, message", [
    ("hf:someone/nothing", "no GGUF file and no config.json"),
    ("hf:someone/absent", "could not fetch hf:someone/absent from the Hugging Face Hub"),
    ("hf:someone/one-gguf:absent.gguf", "could not fetch"),
    ("hf:not a repo", "is not hf:OWNER/REPO"),
    ("hf:someone/x:../../etc/passwd", "is not hf:OWNER/REPO"),
])
def test_bad_specs_say_what_is_wrong(hub, spec, message):
    with pytest.raises(ModelLoadError, match=message):
        model_cache.pull(spec)


def test_parse():
    assert hub_pull.parse("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf") == (
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf")
    assert hub_pull.parse("hf:a/b") == ("a/b", None)
