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


def test_chunks_holding_every_query_word_come_first_in_hybrid(filled):
    filled.add_text("SQLite rocket orbit notes", source="all-words.md")  # every content word of the query
    hits = filled.search("what about the sqlite rocket", k=3, mode="hybrid")
    assert hits[0].source == "all-words.md" and hits[0].why.every_word and hits[0].score > 1
    assert not hits[1].why.every_word and hits[1].score < 1


def test_hits_say_why_they_were_found(filled):
    hit = filled.search("cat dog", k=1, mode="hybrid")[0]
    assert hit.source == "pets.md" and hit.why.every_word
    assert hit.why.bm25_rank == 1 and hit.why.bm25 > 0 and hit.why.similarity > 0.5 and hit.why.vector_rank >= 1
    assert hit.why.describe().startswith("every word; bm25 ")
    vector_only = filled.search("feline", k=1, mode="vector")[0]
    assert vector_only.why.bm25 is None and vector_only.why.describe().startswith("cosine ")


def test_a_question_with_nothing_relevant_gets_no_hits_not_noise(tmp_path):
    from memory import Memory
    from tests.test_memory.conftest import KeywordEmbedder

    with Memory(tmp_path / "m.db", embedder=KeywordEmbedder(), similarity_floor=0.5) as m:
        for source, text in CORPUS.items():
            m.add_text(text, source=source)
        assert m.search("the weather in Lisbon", mode="hybrid") == []
        assert m.search("the weather in Lisbon", mode="vector") == []
        assert [h.source for h in m.search("rocket", k=1, mode="hybrid")] == ["rockets.md"]


@pytest.mark.parametrize("mode", ["bm25", "vector", "hybrid"])
def test_stopwords_punctuation_and_very_long_queries(filled, mode):
    stopwords, syntax = filled.search("what is the ?!", mode=mode), filled.search("\"') OR NEAR(*", mode=mode)
    if mode == "bm25":  # nothing to match, and FTS5's syntax in a query is only text: no error either way
        assert stopwords == [] and syntax == []
    long = " ".join(["database"] + [f"word{i}" for i in range(5000)])
    hits = filled.search(long, k=2, mode=mode)
    assert mode == "vector" or hits[0].source == "db.md"
