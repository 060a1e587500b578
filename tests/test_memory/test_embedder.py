"""Our BERT encoder against sentence-transformers (goldens from scripts/make_goldens.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from memory import MiniLMEmbedder
from memory.embedder import chunk_spans

GOLDEN = Path(__file__).with_name("goldens") / "minilm.npz"


@pytest.mark.model
def test_minilm_matches_sentence_transformers():
    data = np.load(GOLDEN)
    sentences = json.loads(str(data["sentences"]))
    ours = MiniLMEmbedder(batch_size=3).embed(sentences)
    assert ours.shape == (len(sentences), 384) and ours.dtype == np.float32
    cosine = (ours * data["vectors"]).sum(1)
    assert cosine.min() >= 0.999, cosine
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_chunk_windows_overlap_and_cover_everything():
    spans = [(i * 2, i * 2 + 1) for i in range(23)]
    windows = chunk_spans(spans, size=10, overlap=3)
    assert [w[2] for w in windows] == [10, 10, 9]
    assert windows[0][0] == 0 and windows[-1][1] == spans[-1][1]
    assert windows[1][0] == spans[7][0]  # starts 3 tokens before the first window ended
    with pytest.raises(ValueError, match="must exceed the overlap"):
        chunk_spans(spans, size=3, overlap=3)
