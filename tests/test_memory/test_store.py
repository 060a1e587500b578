import sqlite3

import pytest

from memory import Memory, MemoryStoreError
from memory.schema import MIGRATIONS


def test_add_text_dedupes_and_replaces(tmp_path):
    with Memory(tmp_path / "m.db", embedder=None, chunk_tokens=8, overlap=2) as m:
        words = " ".join(f"w{i}" for i in range(30))
        doc = m.add_text(words, source="a.txt", title="A")
        assert m.add_text(words, source="a.txt") == doc  # same content: nothing changes
        assert m.stats()["chunks"] == 5  # 30 words, windows of 8 sharing 2
        chunks = [r[0] for r in m.db.execute("SELECT text FROM chunks ORDER BY position")]
        assert chunks[0] == "w0 w1 w2 w3 w4 w5 w6 w7" and chunks[1].startswith("w6 w7 w8")
        assert m.add_text("completely new words", source="a.txt") == doc  # changed: chunks replaced
        assert [r[0] for r in m.db.execute("SELECT text FROM chunks")] == ["completely new words"]
        assert m.search("w5", mode="bm25") == []  # the old chunks left the FTS index too
        assert m.search("completely", mode="bm25")[0].source == "a.txt"
        assert m.stats()["documents"] == 1


def test_add_path_skips_binaries_and_reports(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Alpha\nalpha text")
    (folder / "sub" / "b.py").write_text("def beta():\n    return 'beta'\n")
    (folder / "image.png").write_bytes(b"\x89PNG\x00\x00binary")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("ignored")
    seen = []
    with Memory(tmp_path / "m.db", embedder=None) as m:
        report = m.add_path(folder, on_file=lambda path, outcome: seen.append((path.name, outcome)))
        assert sorted(p.split("/")[-1] for p in report.added) == ["a.md", "b.py"]
        skipped = sorted((p.split("/")[-1], why) for p, why in report.skipped)
        assert skipped == [("image.png", "binary file"), ("latin1.txt", "not UTF-8 text")]
        assert ("config", "added") not in seen
        again = m.add_path(folder)
        assert len(again.unchanged) == 2 and not again.added
        (folder / "a.md").write_text("# Alpha\nrewritten")
        assert [p.split("/")[-1] for p in m.add_path(folder).replaced] == ["a.md"]
        with pytest.raises(FileNotFoundError):
            m.add_path(tmp_path / "missing")


def test_notes_are_searchable(keyword_memory):
    keyword_memory.remember("The user's cat is called Miso.")
    hit = keyword_memory.search("what is the feline called", k=1, mode="vector")[0]
    assert hit.text == "The user's cat is called Miso." and hit.source.startswith("note:")
    assert keyword_memory.stats()["notes"] == 1


def test_embeddings_are_cached_by_content(tmp_path):
    from tests.test_memory.conftest import KeywordEmbedder

    class Counting(KeywordEmbedder):
        calls = 0

        def embed(self, texts):
            Counting.calls += len(texts)
            return super().embed(texts)

    with Memory(tmp_path / "m.db", embedder=Counting()) as m:
        m.add_text("the cat sat", source="one")
        m.add_text("the cat sat", source="two")  # same text, another source: no new embedding
        assert Counting.calls == 1 and m.stats()["embeddings"] == 1 and m.stats()["chunks"] == 2


def test_corrupt_and_foreign_files_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(MemoryStoreError, match="junk.db: not a usable SQLite memory database"):
        Memory(junk, embedder=None)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE documents (x)").connection.commit()
    with pytest.raises(MemoryStoreError, match="other.db"):
        Memory(other, embedder=None)


def test_bad_search_arguments(tmp_path):
    with Memory(tmp_path / "m.db", embedder=None) as m:
        with pytest.raises(ValueError, match="needs an embedder"):
            m.search("x", mode="vector")
        with pytest.raises(ValueError, match="not one of bm25, vector, hybrid"):
            m.search("x", mode="fuzzy")
        assert m.search('"; DROP TABLE chunks; --', mode="bm25") == []  # quoted terms, no FTS operators
        assert m.search("", mode="bm25") == []
    with pytest.raises(ValueError, match="unknown embedder"):
        Memory(tmp_path / "m.db", embedder="word2vec")


def test_migrations_are_versioned(tmp_path):
    Memory(tmp_path / "m.db", embedder=None).close()
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    Memory(tmp_path / "m.db", embedder=None).close()  # reopening does not migrate again


def test_a_memory_embedded_by_another_model_says_so_and_can_be_reembedded(tmp_path):
    from tests.test_memory.conftest import KeywordEmbedder, OtherEmbedder

    with Memory(tmp_path / "m.db", embedder=KeywordEmbedder()) as m:
        m.add_text("The cat sleeps.", source="a.md")
    with Memory(tmp_path / "m.db", embedder=OtherEmbedder()) as m:
        with pytest.raises(MemoryStoreError, match="vectors from keywords, not from other-model.*tokentrail memory reembed"):
            m.search("cat", mode="vector")
        assert [h.source for h in m.search("cat", mode="bm25")] == ["a.md"]  # BM25 needs no vectors
        assert m.reembed() == 1
        assert [h.source for h in m.search("cat", mode="hybrid")] == ["a.md"]
        assert m.reembed() == 0


def test_vectors_written_by_another_version_are_refused_then_replaced(tmp_path):
    from tests.test_memory.conftest import KeywordEmbedder

    with Memory(tmp_path / "m.db", embedder=KeywordEmbedder()) as m:
        m.add_text("The dog runs.", source="b.md")
        m.db.execute("UPDATE embeddings SET vector = zeroblob(12)")  # as if another version wrote 3 floats
        with pytest.raises(MemoryStoreError, match="vectors of 12 bytes where keywords writes 32"):
            m.search("dog", mode="vector")
        assert m.reembed() == 1
        assert [h.source for h in m.search("dog", mode="vector")] == ["b.md"]
        assert m.stats()["documents"] == 1  # nothing lost
