"""Embedders by name, and our BERT encoder against sentence-transformers (goldens from scripts/make_goldens.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from backends import embedders
from backends.embedders import Embedder, MiniLMEmbedder, available_embedders, load_embedder

GOLDEN = Path(__file__).with_name("goldens") / "minilm.npz"


class Letters:
    """A toy embedder: a letter histogram, enough to show the contract."""

    name, dim = "letters", 26

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = np.array([[t.lower().count(chr(97 + i)) for i in range(26)] for t in texts], dtype=np.float32) + 1e-6
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [(i, i + 1) for i, c in enumerate(text) if c.isalpha()]


def test_embedders_are_found_by_name_and_checked_against_the_contract(monkeypatch):
    assert {"minilm", "all-MiniLM-L6-v2"} <= set(available_embedders())
    assert isinstance(load_embedder("minilm"), MiniLMEmbedder)  # the model loads on first use, not here
    with pytest.raises(ValueError, match="unknown embedder 'word2vec'; known embedders: .*minilm"):
        load_embedder("word2vec")
    monkeypatch.setitem(embedders.BUILTIN_EMBEDDERS, "letters", Letters)
    assert isinstance(load_embedder("letters"), Embedder)
    monkeypatch.setitem(embedders.BUILTIN_EMBEDDERS, "broken", object)
    with pytest.raises(ValueError, match="lacks name, dim, embed or spans"):
        load_embedder("broken")


@pytest.mark.model
@pytest.mark.parametrize("bfloat16", [False, True])
def test_minilm_matches_sentence_transformers(bfloat16):
    data = np.load(GOLDEN)
    sentences = json.loads(str(data["sentences"]))
    ours = MiniLMEmbedder(batch_size=3, bfloat16=bfloat16).embed(sentences)
    assert ours.shape == (len(sentences), 384) and ours.dtype == np.float32
    cosine = (ours * data["vectors"]).sum(1)
    assert cosine.min() >= 0.999, cosine
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
