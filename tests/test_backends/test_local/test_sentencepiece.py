"""SentencePiece vocabularies from GGUF (Llama 2, Mistral v0.1-0.3, Gemma): pieces ranked by score become BPE merges."""

from pathlib import Path

import pytest
from tokenizers import SentencePieceBPETokenizer

from backends.local.config import ModelLoadError
from backends.local.tokenizer import LocalTokenizer
from tests.fixtures.tiny_models import CORPUS

SPECIALS = [("<pad>", 3), ("<eos>", 3), ("<bos>", 3), ("<unk>", 2), ("<start_of_turn>", 3), ("<end_of_turn>", 3),
            ("\n", 4), ("\n\n", 4)]


@pytest.fixture(scope="module")
def trained():
    """A SentencePiece-style BPE trained here, and the GGUF vocabulary llama.cpp's converter would write for it:
    special and user-defined tokens, 256 byte tokens, then the pieces, each scored by its merge rank."""
    reference = SentencePieceBPETokenizer()
    reference.train_from_iterator(CORPUS, vocab_size=200, show_progress=False)
    pieces = sorted(reference.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in SPECIALS] + [f"<0x{b:02X}>" for b in range(256)] + [p for p, _ in pieces]
    types = [k for _, k in SPECIALS] + [6] * 256 + [1] * len(pieces)
    scores = [0.0] * (len(SPECIALS) + 256) + [-float(i) for i in range(len(pieces))]
    return reference, tokens, types, scores


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
    # as llama.cpp and SentencePiece do, text after a special or user-defined token gets the space prefix too
    assert ours.decode(ids) == "<start_of_turn> user\n\n naïve 😀<end_of_turn>"
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
