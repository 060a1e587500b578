"""Continuous batching: many sequences decode together, one forward a step for all of them.

On a CPU, decoding a quantized model is bound by reading the weights; a step that reads them once
for eight sequences costs little more than one for a single sequence. A scheduler thread owns the
model while sequences are active. Each step it

1. prefills one chunk (PREFILL_CHUNK tokens) of the oldest sequence still prefilling, in row 0 of
   the model's own cache (so prompts share prefixes with every earlier prompt, as alone), then
   copies the finished prompt's keys and values into the sequence's slot;
2. picks the next token of every sequence whose logits are ready (each with its own sampler,
   constraint and logprobs), and retires the finished and the cancelled, freeing their slots;
3. runs one forward over every slot, each row at its own position (`model.Rows`).

The batch always has `slots` rows (a free slot decodes a padding token) and reads the cache up to a
multiple of PREFILL_CHUNK: a row's arithmetic then never depends on how many others run beside it
or how long they are, so a seeded request samples the same tokens alone or among others.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from backends.base import BackendError
from backends.local.model import PREFILL_CHUNK, KVCache, Rows, Transformer
from backends.local.sampling import Sampler

Display = Callable[[int], str]
KV_BUDGET_BYTES = 4 * 2**30  # the slots' keys and values together; a request that would need more is refused


@dataclass(eq=False)
class Sequence:
    prompt: list[int]
    sampler: Sampler
    budget: int  # tokens it may generate
    alternatives: int  # logprobs: how many alternatives each step names
    steps: queue.Queue = field(default_factory=queue.Queue)  # what it yields: (token, logprobs, top), an error, None
    cancelled: threading.Event = field(default_factory=threading.Event)
    slot: int = -1
    position: int = 0  # where its next token's key and value go
    next_token: int = 0  # picked, its key and value not yet computed
    logits: Tensor | None = None  # of its next token, once computed
    produced: int = 0
    cached: int | None = None  # prompt tokens the prefix cache held


class Batcher:
    """Decodes up to `slots` sequences together on `model`; `lock` is the one every other use of the model takes."""

    def __init__(self, model: Transformer, slots: int, lock: threading.Lock, display: Display,
                 kv_budget_bytes: int = KV_BUDGET_BYTES) -> None:
        self.model, self.slots, self.lock, self.display = model, slots, lock, display
        c = model.config
        self.position_bytes = slots * len(model.layers) * 2 * c.n_kv_heads * c.head_dim * model.dtype.itemsize
        self.kv_budget_bytes = kv_budget_bytes
        self.caches: list[KVCache] = []
        self.length = 0  # positions each slot holds
        self.active: list[Sequence | None] = [None] * slots
        self.waiting: list[Sequence] = []  # admitted in order, when a slot is free
        self.wake = threading.Condition()
        self.thread: threading.Thread | None = None

    def submit(self, sequence: Sequence) -> Iterator[tuple[int, Tensor, list[tuple[str, float]], list[int], int | None]]:
        """Queues `sequence`; its steps come out of the returned iterator (closing it cancels the sequence)."""
        with self.wake:
            self.waiting.append(sequence)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="tokentrail-batch", daemon=True)
                self.thread.start()
            self.wake.notify()
        return self._steps(sequence)

    @staticmethod
    def _steps(sequence: Sequence) -> Iterator:
        try:
            while (item := sequence.steps.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            sequence.cancelled.set()

    # the scheduler thread

    def _run(self) -> None:
        while True:
            with self.wake:
                while not self.waiting and not any(self.active):
                    if not self.wake.wait(timeout=30.0):
                        self.thread = None  # idle: the next submit starts another
                        return
            try:
                with self.lock, torch.inference_mode():
                    self._step()
            except BaseException as exc:  # the engine failed: every sequence ends with the error
                for sequence in [*self.waiting, *filter(None, self.active)]:
                    sequence.steps.put(exc)
                    sequence.steps.put(None)
                self.waiting, self.active = [], [None] * self.slots

    def _step(self) -> None:
        self._admit()
        prefilling = next((s for s in self.active if s is not None and s.logits is None and s.position == 0), None)
        if prefilling is not None:
            self._prefill_chunk(prefilling)
        for sequence in filter(None, self.active):
            if sequence.cancelled.is_set():
                self._retire(sequence, None)
            elif sequence.logits is not None:
                self._pick(sequence)
        decoding = [s for s in self.active if s is not None and s.position > 0 and s.logits is None]
        if decoding:
            self._forward(decoding)

    def _admit(self) -> None:
        """Waiting sequences into free slots, in order. Every slot is as long as the longest need (one tensor),
        so a sequence fits the budget beside the others exactly when it fits alone; one that does not is refused."""
        with self.wake:
            while self.waiting and None in self.active:
                sequence = self.waiting[0]
                if sequence.cancelled.is_set():
                    self.waiting.pop(0).steps.put(None)
                    continue
                needed = self._needs(sequence)
                if needed * self.position_bytes > self.kv_budget_bytes:
                    self.waiting.pop(0)
                    sequence.steps.put(BackendError(
                        f"the request needs {needed} positions of keys and values in each of {self.slots} slots, "
                        f"{needed * self.position_bytes / 2**20:.0f} MiB, over the budget of "
                        f"{self.kv_budget_bytes / 2**20:.0f} MiB; ask for fewer max_tokens or serve with fewer --parallel"))
                    sequence.steps.put(None)
                    continue
                self.waiting.pop(0)
                sequence.slot = self.active.index(None)
                self.active[sequence.slot] = sequence
        needed = max((self._needs(s) for s in self.active if s is not None), default=0)
        if needed > self.length:
            self._grow(needed)

    @staticmethod
    def _needs(sequence: Sequence) -> int:
        return -(-(len(sequence.prompt) + sequence.budget) // PREFILL_CHUNK) * PREFILL_CHUNK

    def _grow(self, length: int) -> None:
        """Slot caches `length` positions long (on the grid); what they hold is kept."""
        c = self.model.config
        old, self.caches = self.caches, []
        for i in range(len(self.model.layers)):
            cache = KVCache(self.slots, c.n_kv_heads, length, c.head_dim, self.model.dtype, self.model.device)
            if old:
                cache.k[:, :, : self.length] = old[i].k
                cache.v[:, :, : self.length] = old[i].v
            self.caches.append(cache)
        self.length = length

    def _prefill_chunk(self, sequence: Sequence) -> None:
        """One chunk of the prompt in row 0 (where earlier prompts' prefixes are); the last one moves it to its slot."""
        model, prompt = self.model, sequence.prompt
        model.setup_cache(1, len(prompt))
        start = model.reusable_prefix(prompt)
        if sequence.cached is None:
            sequence.cached = start
        end = min(start + PREFILL_CHUNK, len(prompt))
        logits = model.prefill(prompt[:end], start)
        if end < len(prompt):
            return
        for layer, cache in zip(model.layers, self.caches):
            cache.k[sequence.slot, :, : len(prompt)] = layer.attention.cache.k[0, :, : len(prompt)]
            cache.v[sequence.slot, :, : len(prompt)] = layer.attention.cache.v[0, :, : len(prompt)]
        sequence.logits, sequence.position = logits, len(prompt)

    def _pick(self, sequence: Sequence) -> None:
        try:
            token, logprobs = sequence.sampler(sequence.logits)
        except BaseException as exc:  # a grammar at a dead end: this sequence ends with its error, the batch goes on
            self._retire(sequence, exc)
            return
        top: list[tuple[str, float]] = []
        ids: list[int] = []
        if sequence.alternatives:
            values, found = torch.topk(logprobs, sequence.alternatives)
            kept = [(int(i), float(v)) for v, i in zip(values, found) if v > float("-inf")]
            top, ids = [(self.display(i), v) for i, v in kept], [i for i, _ in kept]
        sequence.steps.put((token, float(logprobs[token]), top, ids, sequence.cached if sequence.produced == 0 else None))
        sequence.produced += 1
        sequence.logits, sequence.next_token = None, token
        if sequence.produced >= sequence.budget:
            self._retire(sequence, None)

    def _retire(self, sequence: Sequence, error: BaseException | None) -> None:
        if error is not None:
            sequence.steps.put(error)
        sequence.steps.put(None)
        self.active[sequence.slot] = None

    def _forward(self, decoding: list[Sequence]) -> None:
        """One token for every decoding sequence, in one forward over all the slots."""
        ids = torch.zeros((self.slots, 1), dtype=torch.long, device=self.model.device)
        positions = torch.zeros(self.slots, dtype=torch.long, device=self.model.device)
        for sequence in decoding:
            ids[sequence.slot, 0], positions[sequence.slot] = sequence.next_token, sequence.position
        furthest = max(s.position for s in decoding) + 1
        rows = Rows(positions, min(-(-furthest // PREFILL_CHUNK) * PREFILL_CHUNK, self.length))
        own = [layer.attention.cache for layer in self.model.layers]
        try:
            for layer, cache in zip(self.model.layers, self.caches):
                layer.attention.cache = cache
            logits = self.model.compute(ids, rows)[:, -1]
        finally:
            for layer, cache in zip(self.model.layers, own):
                layer.attention.cache = cache
        for sequence in decoding:
            sequence.logits, sequence.position = logits[sequence.slot], sequence.position + 1
