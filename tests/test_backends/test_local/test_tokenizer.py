import pytest

from backends.local.loader import load_model
from backends.local.tokenizer import IncrementalDetokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    return load_model(tiny_models["llama"][1]).tokenizer


def stream(tokenizer, ids):
    detok = IncrementalDetokenizer(tokenizer)
    pieces = [detok.push(i) for i in ids]
    return pieces, pieces + [detok.flush()]


@pytest.mark.parametrize("text", ["héllo wörld", "emoji 😀👍🏽 and 日本語", "plain ascii\n\tcode()", "🇫🇷🇩🇪"])
def test_incremental_detokenization_never_splits_a_character(tokenizer, text):
    ids = tokenizer.encode(text)
    assert len(ids) > len(text.encode()) // 4  # byte-level pieces: characters do span tokens here
    pieces, released = stream(tokenizer, ids)
    assert "".join(released) == tokenizer.decode(ids) == text
    assert all("\ufffd" not in p for p in pieces)


def test_a_character_cut_short_is_not_emitted(tokenizer):
    ids = tokenizer.encode("ok 😀")
    pieces, released = stream(tokenizer, ids[:-1])  # the emoji's last byte never arrives
    assert "".join(released) == "ok "


def test_special_tokens_and_bos(tiny_models):
    tok = load_model(tiny_models["qwen2"][0]).tokenizer
    ids = tok.encode("<|im_start|>user")
    assert ids[0] == tok.hf.token_to_id("<|im_start|>")
    assert tok.display(ids[0]) == "<|im_start|>"
    assert tok.eos_token_id == tok.hf.token_to_id("<|im_end|>")
    assert tok.encode("x", add_special_tokens=True) == tok.encode("x")  # add_bos_token is false


def test_tekken_splits_words_at_case_changes_and_digits_one_by_one(tmp_path):
    """Mistral Nemo's pre-tokenizer, as its GGUF names it."""
    from tests.fixtures.tiny_models import random_weights, tiny_config, tiny_tokenizer, write_gguf

    hf = tiny_tokenizer()
    cfg = tiny_config("mistral", hf.get_vocab_size(with_added_tokens=True))
    tok = load_model(write_gguf(tmp_path / "nemo.gguf", cfg, random_weights(cfg), hf, pre="tekken")).tokenizer
    pieces = tok.hf.pre_tokenizer.pre_tokenize_str("HelloWorld 2024 it's")
    assert [p for p, _ in pieces] == ["Hello", "World", "Ġ", "2", "0", "2", "4", "Ġit", "'s"]
    assert tok.decode(tok.encode("HelloWorld 2024 it's")) == "HelloWorld 2024 it's"
