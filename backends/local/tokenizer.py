"""Tokenizers built with Hugging Face `tokenizers`, from GGUF vocabularies or tokenizer.json."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from backends.local.config import ModelLoadError

# Pre-tokenizer regular expressions, as llama.cpp names them in tokenizer.ggml.pre.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Mistral Nemo's "tekken": words split at case changes, digits one by one.
_TEKKEN_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_BYTE_LEVEL = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
_DIGITS_THEN_BYTE_LEVEL = ("smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva")
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<|eom_id|>", "</s>", "<end_of_turn>", "<|end|>")

GGUF_NORMAL, GGUF_UNKNOWN, GGUF_CONTROL, GGUF_USER_DEFINED = 1, 2, 3, 4
SPM_SPACE = "\u2581"  # SentencePiece's visible space


def _pre_tokenizer(pre: str, source: Path) -> tuple[pre_tokenizers.PreTokenizer, bool]:
    """(pre-tokenizer, ignore_merges) for a GGUF pre-tokenizer name."""
    if pre in ("default", "gpt2", "gpt-2", ""):
        return _BYTE_LEVEL, False
    if pre in _DIGITS_THEN_BYTE_LEVEL:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _BYTE_LEVEL]), False
    split = {"llama-bpe": _LLAMA3_SPLIT, "llama3": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT, "tekken": _TEKKEN_SPLIT}.get(pre)
    if split is None:
        raise ModelLoadError(f"{source}: unsupported tokenizer pre-tokenizer type {pre!r}")
    sequence = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    return sequence, pre in ("llama-bpe", "llama3")


class LocalTokenizer:
    """A `tokenizers.Tokenizer` plus what the engine needs to know about its special tokens."""

    def __init__(self, tokenizer: Tokenizer, bos_token_id: int | None, eos_token_ids: Sequence[int], add_bos: bool) -> None:
        self.hf = tokenizer
        self.bos_token_id = bos_token_id
        self.eos_token_ids = tuple(dict.fromkeys(eos_token_ids))
        self.add_bos = add_bos
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1 if vocab else 0
        self._special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}

    @property
    def eos_token_id(self) -> int | None:
        return self.eos_token_ids[0] if self.eos_token_ids else None

    def token_text(self, token_id: int) -> str:
        return self.hf.id_to_token(token_id) or ""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; special tokens written in the text become their ids.

        Chat prompts already carry BOS from the template, so none is added unless asked.
        """
        ids = self.hf.encode(text, add_special_tokens=False).ids
        if add_special_tokens and self.add_bos and self.bos_token_id is not None:
            ids = [self.bos_token_id, *ids]
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def display(self, token_id: int) -> str:
        """How one token reads on its own, for the decoding panel."""
        return self.decode([token_id])

    @classmethod
    def from_gguf_vocab(
        cls,
        source: Path,
        model: str,
        pre: str | None,
        tokens: list[str],
        token_types: list[int] | None,
        merges: list[str] | None,
        bos_token_id: int | None,
        eos_token_ids: Sequence[int],
        add_bos: bool,
        scores: Sequence[float] | None = None,
        add_space_prefix: bool = True,
    ) -> LocalTokenizer:
        if model == "llama":
            if scores is None or len(scores) != len(tokens):
                raise ModelLoadError(f"{source}: a SentencePiece vocabulary needs tokenizer.ggml.scores, one per token")
            tokenizer = _sentencepiece(tokens, [float(x) for x in scores], token_types or [GGUF_NORMAL] * len(tokens),
                                       add_space_prefix, source)
            return cls(tokenizer, bos_token_id, _with_end_of_turn(tokenizer, eos_token_ids), add_bos)
        if model != "gpt2":
            raise ModelLoadError(
                f"{source}: tokenizer model {model!r} is not supported from GGUF (byte-level BPE 'gpt2' and "
                "SentencePiece 'llama' are); load the model's Hugging Face folder with its tokenizer.json instead"
            )
        if not merges:
            raise ModelLoadError(f"{source}: the BPE vocabulary has no tokenizer.ggml.merges")
        pre_tokenizer, ignore_merges = _pre_tokenizer(pre or "default", source)
        vocab = {token: i for i, token in enumerate(tokens)}
        pairs = []
        for merge in merges:
            left, sep, right = merge.partition(" ")
            if not sep:
                raise ModelLoadError(f"{source}: malformed BPE merge {merge!r}")
            pairs.append((left, right))
        try:
            bpe = models.BPE(vocab=vocab, merges=pairs, ignore_merges=ignore_merges)
        except Exception as exc:
            raise ModelLoadError(f"{source}: invalid BPE vocabulary: {exc}") from exc
        tokenizer = Tokenizer(bpe)
        tokenizer.pre_tokenizer = pre_tokenizer
        tokenizer.decoder = decoders.ByteLevel()
        types = token_types or [1] * len(tokens)
        special = [
            AddedToken(tokens[i], special=True, normalized=False)
            for i, kind in enumerate(types)
            if kind in (GGUF_CONTROL, GGUF_USER_DEFINED)
        ]
        tokenizer.add_special_tokens(special)
        return cls(tokenizer, bos_token_id, _with_end_of_turn(tokenizer, eos_token_ids), add_bos)

    @classmethod
    def from_file(
        cls, path: Path, bos_token: str | None, eos_tokens: Sequence[str | int], add_bos: bool
    ) -> LocalTokenizer:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ModelLoadError(f"{path}: not a readable tokenizer.json ({exc})") from exc
        to_id = lambda t: t if isinstance(t, int) else tokenizer.token_to_id(t)  # noqa: E731
        bos_id = to_id(bos_token) if bos_token is not None else None
        eos_ids = [i for i in (to_id(t) for t in eos_tokens) if i is not None]
        return cls(tokenizer, bos_id, _with_end_of_turn(tokenizer, eos_ids), add_bos)


def _sentencepiece(tokens: list[str], scores: list[float], types: list[int], add_space_prefix: bool,
                   source: Path) -> Tokenizer:
    """A SentencePiece BPE vocabulary (Llama 2, Mistral v0.1-0.3, Gemma) as a `tokenizers` BPE.

    SentencePiece merges the adjacent pair whose joined piece scores highest; the same ranking
    written as BPE merges (every split of a piece into two pieces of the vocabulary, best piece
    first) gives the same tokens. Characters outside the vocabulary fall back to <0xXX> bytes.
    Control tokens are special; user-defined ones (Gemma's newline and space runs) are matched
    whole, before the merges, as llama.cpp does. With a space prefix (Llama 2, Phi-3) only the
    text's start gets one, not the text after each special token: transformers' non-legacy
    behaviour, which the chat templates of these models are written for.
    """
    vocab = {token: i for i, token in enumerate(tokens)}
    ranked = []
    for i, (token, score) in enumerate(zip(tokens, scores)):
        if types[i] != GGUF_NORMAL:
            continue
        for k in range(1, len(token)):
            left, right = vocab.get(token[:k]), vocab.get(token[k:])
            if left is not None and right is not None:
                ranked.append((-score, i, left, right))
    ranked.sort()
    merges = [(tokens[left], tokens[right]) for _, _, left, right in ranked]
    unknown = next((t for t, kind in zip(tokens, types) if kind == GGUF_UNKNOWN), None)
    try:
        bpe = models.BPE(vocab=vocab, merges=merges, unk_token=unknown, byte_fallback=True, fuse_unk=True)
    except Exception as exc:
        raise ModelLoadError(f"{source}: invalid SentencePiece vocabulary: {exc}") from exc
    tokenizer = Tokenizer(bpe)
    scheme = "first" if add_space_prefix else "never"
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPM_SPACE, prepend_scheme=scheme, split=False)
    steps = [decoders.Replace(SPM_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    tokenizer.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if add_space_prefix else []))
    tokenizer.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                                  for i, kind in enumerate(types) if kind in (GGUF_CONTROL, GGUF_UNKNOWN)])
    tokenizer.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                          for i, kind in enumerate(types) if kind == GGUF_USER_DEFINED])
    return tokenizer


def _with_end_of_turn(tokenizer: Tokenizer, eos_ids: Sequence[int]) -> list[int]:
    """EOS plus the end-of-turn tokens of common chat formats that this vocabulary has."""
    extra = [tokenizer.token_to_id(t) for t in _END_OF_TURN]
    return [*eos_ids, *(i for i in extra if i is not None)]


class IncrementalDetokenizer:
    """Turns a growing list of ids into text deltas that never split a UTF-8 character."""

    def __init__(self, tokenizer: LocalTokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = 0  # start of the window that is decoded again for context
        self._read = 0  # ids before this have been released as text

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self.tokenizer.decode(self.ids[self._prefix : self._read])
        after = self.tokenizer.decode(self.ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self.ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back, less a trailing character cut short by the end of the stream."""
        before = self.tokenizer.decode(self.ids[self._prefix : self._read])
        after = self.tokenizer.decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return after[len(before) :].rstrip("\ufffd")
