"""Earlier prompts' keys and values, kept so that prompts taking turns each find their prefix again.

The KV cache holds one sequence. An agent alternates its plan, act and verify prompts, and a
server its clients' system prompts: each new prompt overwrote the last one's keys and values,
so the next run of the same prompt computed it all again. Before the cache's contents are
overwritten they are copied here (within a memory budget, least recently used out first), and
a request whose prompt shares a longer prefix with a copy than with the cache gets it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

MIN_TOKENS = 32  # shorter sequences are cheaper to recompute than to keep


@dataclass
class Snapshot:
    tokens: list[int]
    layers: list[tuple[Tensor, Tensor]]  # per layer, K and V [1, kv heads, len(tokens), head dim]

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.layers)


def common_prefix(held: Sequence[int], wanted: Sequence[int]) -> int:
    """How many leading tokens of `wanted` `held` has, at most all but `wanted`'s last (its logits are needed)."""
    n = 0
    for a, b in zip(held, wanted[: len(wanted) - 1]):
        if a != b:
            break
        n += 1
    return n


class PrefixSnapshots:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.entries: list[Snapshot] = []  # least recently used first

    def save(self, tokens: list[int], layers: list[tuple[Tensor, Tensor]]) -> None:
        """Keeps a copy of K/V rows for `tokens` (views into the cache: they are cloned here)."""
        if len(tokens) < MIN_TOKENS or self.budget <= 0:
            return
        if any(e.tokens[: len(tokens)] == tokens for e in self.entries):
            return  # a longer copy holds these already
        self.entries = [e for e in self.entries if tokens[: len(e.tokens)] != e.tokens]  # its prefixes: superseded
        snapshot = Snapshot(list(tokens), [(k[:, :, : len(tokens)].clone(), v[:, :, : len(tokens)].clone()) for k, v in layers])
        if snapshot.nbytes > self.budget:
            return
        self.entries.append(snapshot)
        while sum(e.nbytes for e in self.entries) > self.budget:
            self.entries.pop(0)

    def best(self, wanted: Sequence[int]) -> tuple[Snapshot, int] | None:
        """The snapshot sharing the longest prefix with `wanted`, and that length (marked as just used)."""
        scored = [(common_prefix(e.tokens, wanted), i) for i, e in enumerate(self.entries)]
        length, index = max(scored, default=(0, -1))
        if length == 0:
            return None
        snapshot = self.entries.pop(index)
        self.entries.append(snapshot)
        return snapshot, length

    def clear(self) -> None:
        self.entries = []
