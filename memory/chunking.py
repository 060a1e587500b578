"""Chunking: documents cut into overlapping windows of tokens (an embedder's, or words without one)."""

from __future__ import annotations

import re

_WORDS = re.compile(r"\S+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Whitespace-separated words: the chunking unit when there is no embedder."""
    return [m.span() for m in _WORDS.finditer(text)]


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
