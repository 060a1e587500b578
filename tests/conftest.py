import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ.setdefault("TOKENTRAIL_PACKED_CACHE", "0")  # no converted models left on disk; test_packed_cache turns it on
# Triton kernels run through the NumPy interpreter on machines without a GPU. It must be
# set before triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tests.fixtures.tiny_models import build  # noqa: E402

TINY_FAMILIES = ("llama", "qwen2", "mistral", "llama3.2", "qwen3", "gemma3", "phi3", "phi3.5", "gemma3-4b")
GOLDENS = Path(__file__).resolve().parent / "test_backends" / "goldens"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, tuple[Path, Path, dict]]:
    """family -> (Hugging Face folder, GGUF file, config.json contents)."""
    tmp = tmp_path_factory.mktemp("tiny")
    return {family: build(tmp, family) for family in TINY_FAMILIES}


@pytest.fixture(scope="session")
def chat_models(tmp_path_factory) -> dict:
    """family -> a tiny model of a family that calls tools (Qwen2.5, Llama 3.1, Mistral) on the local backend."""
    from backends.local.backend import LocalBackend
    from tests.fixtures.chat_families import FAMILIES, build_chat_model

    tmp = tmp_path_factory.mktemp("chat")
    return {name: LocalBackend(build_chat_model(tmp, name), auto_pull=False) for name in FAMILIES}


@pytest.fixture(scope="session")
def smollm2():
    """The default model through the local backend, pulled into the cache on first use."""
    from backends import load_backend

    return load_backend("local")


@pytest.fixture(scope="session")
def smollm2_exact():
    """The default model at float32: token-exact against transformers."""
    from backends import load_backend

    return load_backend("local", precision="exact")
