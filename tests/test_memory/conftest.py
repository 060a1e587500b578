import numpy as np
import pytest

from memory.chunking import word_spans

TOPICS = ["cat", "dog", "kitten", "puppy", "sql", "database", "rocket", "space"]
SYNONYMS = {"feline": "cat", "felines": "cat", "canine": "dog", "canines": "dog", "orbit": "space"}


class KeywordEmbedder:
    """A deterministic stand-in for the neural embedder: one dimension per topic word."""

    name = "keywords"
    dim = len(TOPICS)

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(".", " ").split():
                word = SYNONYMS.get(word, word)
                if word in TOPICS:
                    out[row, TOPICS.index(word)] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)

    def spans(self, text):
        return word_spans(text)


class OtherEmbedder(KeywordEmbedder):
    """The same vectors under another model's name: a memory embedded by one model, opened with another."""

    name = "other-model"


@pytest.fixture
def keyword_memory(tmp_path):
    from memory import Memory

    with Memory(tmp_path / "m.db", embedder=KeywordEmbedder(), chunk_tokens=20, overlap=5) as m:
        yield m
