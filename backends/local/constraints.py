"""Grammar-constrained decoding with llguidance: JSON Schema, regular expressions, Lark grammars.

Each step the grammar's matcher says which tokens may come next; every other logit becomes
-inf, so the output is guaranteed to parse. The bridge from our tokenizer to llguidance's is
built once per model (about 0.3 s) and reused.
"""

from __future__ import annotations

import json

import llguidance
import numpy as np
import torch
from torch import Tensor

from backends.base import BackendError, GenerationError
from backends.local.processors import History
from backends.local.tokenizer import LocalTokenizer
from backends.types import Constraint

MAX_STATE = 600  # characters of llguidance's parser state quoted in an error
# Compact JSON as json.dumps writes it: small models wander when whitespace is free.
COMPACT_JSON = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def bridge(tokenizer: LocalTokenizer, vocab_size: int) -> llguidance.LLTokenizer:
    """llguidance's view of our tokenizer; cached on the tokenizer object."""
    cached = getattr(tokenizer, "_llguidance", None)
    if cached is None or cached.vocab_size != vocab_size:
        eos = tokenizer.eos_token_id
        cached = llguidance.LLTokenizer(tokenizer.hf.to_str(), n_vocab=vocab_size, eos_token=eos)
        tokenizer._llguidance = cached  # type: ignore[attr-defined]
    return cached


def grammar_text(constraint: Constraint) -> tuple[str, str]:
    """(what kind, llguidance grammar) for a Constraint."""
    if constraint.json_schema is not None:
        try:
            schema = json.dumps(constraint.json_schema)
            return "JSON Schema", llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=COMPACT_JSON)
        except ValueError as exc:
            raise BackendError(f"invalid JSON Schema: {exc}") from exc
    if constraint.regex is not None:
        return "regex", llguidance.LLMatcher.grammar_from_regex(constraint.regex)
    return "Lark grammar", llguidance.LLMatcher.grammar_from_lark(constraint.grammar or "")


class GrammarMask:
    """A logits processor that allows only the tokens the grammar accepts next."""

    def __init__(self, constraint: Constraint, tokenizer: LocalTokenizer, vocab_size: int) -> None:
        llg = bridge(tokenizer, vocab_size)
        kind, grammar = grammar_text(constraint)
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, llg)
        if is_error:
            raise BackendError(f"invalid {kind}: {messages[0] if messages else 'rejected by llguidance'}")
        self.matcher = llguidance.LLMatcher(llg, grammar, log_level=0)
        if self.matcher.is_error():
            raise BackendError(f"invalid {kind}: {self.matcher.get_error()}")
        self.vocab_size = vocab_size
        self.tokenizer = tokenizer

    def allowed(self) -> Tensor:
        bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        return torch.from_numpy(bits[: self.vocab_size].astype(bool))

    def __call__(self, logits: Tensor, history: History) -> Tensor:
        allowed = self.allowed().to(logits.device)
        if not bool(allowed.any()):
            raise GenerationError(f"the grammar allows no next token ({self.matcher.get_error() or 'dead end'})")
        return logits.masked_fill(~allowed, float("-inf"))

    def consume(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            text = self.tokenizer.decode([token])
            raise GenerationError(f"the grammar rejected token {token} ({text!r}) that its mask allowed; "
                                  f"grammar state: {self.matcher.get_error()[:MAX_STATE]}")

    @property
    def finished(self) -> bool:
        return self.matcher.is_stopped()
