"""SentencePiece vocabularies from GGUF (Llama 2, Mistral v0.1-0.3, Gemma): pieces ranked by score become BPE merges."""

from pathlib import Path

import pytest

from backends.local.config import ModelLoadError
from backends.local.tokenizer import LocalTokenizer
from tests.fixtures.spm_models import GEMMA_SPECIALS, spm_vocab


@pytest.fixture(scope="module")
def trained():
    """A SentencePiece-style BPE trained here, and the GGUF vocabulary llama.cpp's converter would write for it."""
    vocab = spm_vocab(GEMMA_SPECIALS)
    return vocab.reference, vocab.tokens, vocab.types, vocab.scores


def spm(tokens, types, scores, add_space_prefix=True) -> LocalTokenizer:
    return LocalTokenizer.from_gguf_vocab(Path("spm.gguf"), model="llama", pre="default", tokens=tokens, token_types=types,
                                          merges=None, scores=scores, bos_token_id=2, eos_token_ids=[1], add_bos=True,
                                          add_space_prefix=add_space_prefix)


@pytest.mark.parametrize("text", ["the quick brown fox jumps over the lazy dog", "hello world, hello tokens",
                                  "def add(a, b):", "12345 67890", "lazy dogs jump"])
def test_same_pieces_as_the_trained_model(trained, text):
    reference, tokens, types, scores = trained
    ours = spm(tokens, types, scores)
    assert [tokens[i] for i in ours.encode(text)] == reference.encode(text).tokens
    assert ours.decode(ours.encode(text)) == text


def test_bytes_specials_and_user_defined_tokens(trained):
    _, tokens, types, scores = trained
    ours = spm(tokens, types, scores)
    ids = ours.encode("<start_of_turn>user\n\nnaïve 😀<end_of_turn>")
    pieces = [tokens[i] for i in ids]
    assert pieces[0] == "<start_of_turn>" and pieces[-1] == "<end_of_turn>" and "\n\n" in pieces
    assert "<0xC3>" in pieces and "<0xAF>" in pieces and "<0xF0>" in pieces  # ï and the emoji as UTF-8 bytes
    # only the text's start gets the space prefix, not what follows a special token (transformers, legacy=False)
    assert ours.decode(ids) == "<start_of_turn>user\n\nnaïve 😀<end_of_turn>"
    assert [tokens[i] for i in ours.encode("hello<end_of_turn>hello")] == ["\u2581hello", "<end_of_turn>", "he", "llo"]
    gemma_like = spm(tokens, types, scores, add_space_prefix=False)
    ids = gemma_like.encode("<start_of_turn>user\n\nnaïve 😀<end_of_turn>")
    assert gemma_like.decode(ids) == "<start_of_turn>user\n\nnaïve 😀<end_of_turn>"
    assert gemma_like.decode(ids, skip_special_tokens=True) == "user\n\nnaïve 😀"
    assert ours.encode("hi", add_special_tokens=True)[0] == 2 and ours.eos_token_ids[:1] == (1,)
    assert 5 in ours.eos_token_ids  # <end_of_turn> ends a turn


def test_gemma_adds_no_space_prefix(trained):
    _, tokens, types, scores = trained
    with_prefix, without = spm(tokens, types, scores), spm(tokens, types, scores, add_space_prefix=False)
    assert tokens[with_prefix.encode("hello")[0]].startswith("\u2581")
    assert not tokens[without.encode("hello")[0]].startswith("\u2581")
    assert without.decode(without.encode(" hello  world")) == " hello  world"


def test_scores_must_be_there(trained):
    _, tokens, types, _ = trained
    with pytest.raises(ModelLoadError, match="SentencePiece vocabulary needs tokenizer.ggml.scores"):
        spm(tokens, types, None)
    with pytest.raises(ModelLoadError, match="tokenizer model 'bert' is not supported from GGUF"):
        LocalTokenizer.from_gguf_vocab(Path("x.gguf"), model="bert", pre=None, tokens=tokens, token_types=types,
                                       merges=None, bos_token_id=None, eos_token_ids=[], add_bos=False)
