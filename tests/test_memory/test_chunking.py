"""Chunking windows over token spans."""

import pytest

from memory.chunking import chunk_spans, word_spans


def test_chunk_windows_overlap_and_cover_everything():
    spans = [(i * 2, i * 2 + 1) for i in range(23)]
    windows = chunk_spans(spans, size=10, overlap=3)
    assert [w[2] for w in windows] == [10, 10, 9]
    assert windows[0][0] == 0 and windows[-1][1] == spans[-1][1]
    assert windows[1][0] == spans[7][0]  # starts 3 tokens before the first window ended
    with pytest.raises(ValueError, match="must exceed the overlap"):
        chunk_spans(spans, size=3, overlap=3)


def test_without_an_embedder_words_are_the_unit():
    assert word_spans("  two  words") == [(2, 5), (7, 12)]
