"""Known-answer tests for each search mode."""

import pytest

CORPUS = {
    "pets.md": "My cat and my dog sleep together. The cat is older than the dog.",
    "kittens.md": "Kittens grow into cat adults; a kitten needs food.",
    "db.md": "SQLite is a database engine; SQL queries run inside the database.",
    "rockets.md": "The rocket reached space and entered orbit.",
    "felines.md": "Felines and canines: feline friends.",
}


@pytest.fixture
def filled(keyword_memory):
    for source, text in CORPUS.items():
        keyword_memory.add_text(text, source=source)
    return keyword_memory


def sources(hits):
    return [h.source for h in hits]


def test_bm25_finds_the_exact_words(filled):
    hits = filled.search("SQLite queries", mode="bm25")
    assert sources(hits) == ["db.md"]
    assert sources(filled.search("sleeping dogs", mode="bm25"))[0] == "pets.md"  # porter stemming


def test_vector_finds_meaning_without_shared_words(filled):
    hits = filled.search("feline", k=2, mode="vector")  # the stand-in embedder maps feline to cat
    assert set(sources(hits)) <= {"pets.md", "kittens.md", "felines.md"}
    assert "db.md" not in sources(filled.search("cat", k=3, mode="vector"))


def test_hybrid_puts_documents_found_by_both_first(filled):
    # "rocket space": rockets.md matches both ways. "orbit" alone: vector finds rockets.md,
    # bm25 also finds it. Add a lexical-only and a vector-only distractor.
    filled.add_text("The word rocket appears here without meaning much.", source="lexical-only.md")
    filled.add_text("space space space", source="vector-only.md")
    hits = filled.search("rocket orbit", k=3, mode="hybrid")
    assert hits[0].source == "rockets.md"
    assert {"lexical-only.md", "vector-only.md"} & set(sources(hits[1:]))
    assert hits[0].score > hits[1].score


def test_source_filter(filled):
    assert sources(filled.search("cat", mode="bm25", source="kitten*")) == ["kittens.md"]
    assert sources(filled.search("cat", mode="vector", source="pets.md")) == ["pets.md"]
    assert filled.search("cat", mode="hybrid", source="nothing*") == []


def test_hits_carry_what_they_should(filled):
    hit = filled.search("database", k=1)[0]
    assert hit.source == "db.md" and "SQLite" in hit.text and hit.chunk_id > 0 and hit.document_id > 0


@pytest.mark.model
def test_real_embeddings_rank_by_meaning(tmp_path):
    from memory import Memory

    with Memory(tmp_path / "m.db") as m:
        for source, text in CORPUS.items():
            m.add_text(text, source=source)
        assert m.search("spacecraft launch", k=1, mode="vector")[0].source == "rockets.md"
        assert m.search("relational storage of records", k=1, mode="vector")[0].source == "db.md"
        assert m.search("young cats", k=1, mode="hybrid")[0].source == "kittens.md"
