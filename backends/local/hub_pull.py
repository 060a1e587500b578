"""Models from the Hugging Face Hub: `hf:OWNER/REPO[:FILE]`, for users who have the Hub.

`huggingface_hub` does the download, the resume of an interrupted one and the cache (the
Hub's own, shared with every other tool that uses it); HF_ENDPOINT points it elsewhere (a
mirror, or the tests' local server). A file the Hub stores with LFS is checked against its
sha256 after download; a mismatch removes it. A file already in the cache is used offline.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from backends.local.config import ModelLoadError
from backends.local.wheel_pull import sha256_of

PREFIX = "hf:"
_SPEC = re.compile(r"^hf:(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?::(?P<file>[^:]+))?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FOLDER_FILES = ["*.json", "*.safetensors", "*.jinja", "tokenizer*"]


def parse(spec: str) -> tuple[str, str | None]:
    """(repo id, file or None) of `hf:OWNER/REPO[:FILE]`."""
    match = _SPEC.match(spec)
    if match is None or ".." in (match["file"] or "").split("/"):
        raise ModelLoadError(f"{spec!r} is not hf:OWNER/REPO or hf:OWNER/REPO:FILE (for example "
                             "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf)")
    return match["repo"], match["file"]


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _choose_file(repo_id: str, files: list[str]) -> str | None:
    """The repository's one GGUF file; None for a safetensors repository."""
    ggufs = sorted(f for f in files if f.endswith(".gguf"))
    if len(ggufs) == 1:
        return ggufs[0]
    if len(ggufs) > 1:
        listing = "\n".join(f"  hf:{repo_id}:{f}" for f in ggufs)
        raise ModelLoadError(f"{repo_id} has {len(ggufs)} GGUF files; name the one to pull:\n{listing}")
    if "config.json" in files and any(f.endswith(".safetensors") for f in files):
        return None
    raise ModelLoadError(f"{repo_id} has no GGUF file and no config.json with safetensors weights; nothing to load")


def _download_file(repo_id: str, filename: str) -> Path:
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename)
    if isinstance(cached, str):
        return Path(cached)
    endpoint = _endpoint()
    meta = get_hf_file_metadata(hf_hub_url(repo_id, filename, endpoint=endpoint), endpoint=endpoint)
    path = Path(hf_hub_download(repo_id, filename, endpoint=endpoint))
    if meta.etag and _SHA256.match(meta.etag):  # an LFS file: its ETag is its sha256
        actual = sha256_of(path)
        if actual != meta.etag:
            blob = path.resolve()
            path.unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
            raise ModelLoadError(f"hf:{repo_id}:{filename}: sha256 {actual} does not match the Hub's {meta.etag}; "
                                 "the download was removed, pull again to fetch it anew")
    return path


def pull(spec: str) -> Path:
    """The local path of `hf:OWNER/REPO[:FILE]`, downloaded into the Hub cache when not there yet."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo_id, filename = parse(spec)
    try:
        if filename is None:
            filename = _choose_file(repo_id, HfApi(endpoint=_endpoint()).list_repo_files(repo_id))
        if filename is not None:
            return _download_file(repo_id, filename)
        return Path(snapshot_download(repo_id, allow_patterns=_FOLDER_FILES, endpoint=_endpoint()))
    except ModelLoadError:
        raise
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:  # offline, unknown or gated repo
        raise ModelLoadError(
            f"could not fetch {spec} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
            "Offline? Pass a local .gguf file or model folder, or a pulled model name (see `tokentrail models`)."
        ) from exc
