"""Continuous batching: many sequences decode together, one forward a step for all of them.

On a CPU, decoding a quantized model is bound by reading the weights; a step that reads them once
for eight sequences costs little more than one for a single sequence. A scheduler thread owns the
model while sequences are active. Each step it

1. computes prompts in chunks of PREFILL_CHUNK tokens. With `fixed_rows`, one chunk of the oldest
   prompt, in row 0 of the model's own cache (as alone), the finished prompt's keys and values then
   copied into its slot. Without, the next chunk of every prompt in one forward, in their slots,
   each starting from what the prefix cache held for it (copied from row 0 or a snapshot); a
   finished prompt's whole chunks go back to the snapshots for later prompts to share;
2. picks the next token of every sequence whose logits are ready (each with its own sampler,
   constraint and logprobs), and retires the finished and the cancelled, freeing their slots;
3. runs one forward over the occupied slots, each row at its own position (`model.Rows`).

Occupied slots are kept in rows 0..n-1: a sequence that ends gives its row to the last one. With
`fixed_rows` the forward always has `slots` rows (free ones decode a padding token); it reads the
cache to a multiple of PREFILL_CHUNK. A row's arithmetic then never depends on how many others run
beside it or how long they are, so a seeded request samples the same tokens alone or among others
(float32 matmuls give other last bits at another row count). Without it, n rows: one request alone
costs what it costs on the one-at-a-time engine.
"""

from __future__ import annotations

import atexit
import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from backends.base import BackendError
from backends.local.model import PREFILL_CHUNK, KVCache, Rows, Transformer
from backends.local.sampling import Sampler, alternatives

Display = Callable[[int], str]


def on_grid(positions: int) -> int:
    return -(-positions // PREFILL_CHUNK) * PREFILL_CHUNK

KV_BUDGET_BYTES = 4 * 2**30  # the slots' keys and values together
PROMPTS_TOGETHER = 8  # prompts whose next chunks one forward computes (fast precision)


@dataclass(eq=False)
class BatchSequence:
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
    prefilled: int = 0  # prompt tokens whose keys and values its slot holds (prompts computed together)
    order: int = 0  # when it was admitted: prompts are computed oldest first


class Batcher:
    """Decodes up to `slots` sequences together on `model`; `lock` is the one every other use of the model takes."""

    def __init__(self, model: Transformer, slots: int, lock: threading.Lock, display: Display,
                 fixed_rows: bool = True, kv_budget_bytes: int = KV_BUDGET_BYTES) -> None:
        self.model, self.slots, self.lock, self.display, self.fixed_rows = model, slots, lock, display, fixed_rows
        c = model.config
        self.position_bytes = slots * len(model.layers) * 2 * c.n_kv_heads * c.head_dim * model.dtype.itemsize
        self.kv_budget_bytes = kv_budget_bytes
        self.caches: list[KVCache] = []
        self.length = 0  # positions each slot holds
        self.active: list[BatchSequence] = []  # sequence i in slot i
        self.waiting: list[BatchSequence] = []  # admitted in order, when a slot is free
        self.admitted = itertools.count()
        self.wake = threading.Condition()
        self.thread: threading.Thread | None = None
        self.closed = False
        atexit.register(self.close)  # a scheduler inside a torch op at interpreter exit aborts the process

    def close(self) -> None:
        """Stops the scheduler thread once the step it is in ends; sequences still queued end with an error."""
        with self.wake:
            self.closed = True
            self.wake.notify_all()
            thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60)

    def submit(self, sequence: BatchSequence) -> Iterator[tuple[int, Tensor, list[tuple[str, float]], list[int], int | None]]:
        """Queues `sequence`; its steps come out of the returned iterator (closing it cancels the sequence)."""
        with self.wake:
            if self.closed:
                raise BackendError("the batching engine is closed")
            self.waiting.append(sequence)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="tokentrail-batch", daemon=True)
                self.thread.start()
            self.wake.notify()
        return self._steps(sequence)

    @staticmethod
    def _steps(sequence: BatchSequence) -> Iterator:
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
                while not self.waiting and not self.active and not self.closed:
                    if not self.wake.wait(timeout=30.0):
                        self.thread = None  # idle: the next submit starts another
                        return
                if self.closed:
                    for sequence in [*self.waiting, *self.active]:
                        sequence.steps.put(BackendError("the batching engine was closed"))
                        sequence.steps.put(None)
                    self.waiting, self.active, self.thread = [], [], None
                    return
            try:
                with self.lock, torch.inference_mode():
                    self._step()
            except BaseException as exc:  # the engine failed: every sequence ends with the error
                for sequence in [*self.waiting, *self.active]:
                    sequence.steps.put(exc)
                    sequence.steps.put(None)
                self.waiting, self.active = [], []

    def _step(self) -> None:
        self._admit()
        self._fit()
        prefilling = sorted((s for s in self.active if s.logits is None and s.position == 0), key=lambda s: s.order)
        if prefilling and self.fixed_rows:
            self._prefill_chunk(prefilling[0])
        elif prefilling:
            self._prefill_together(prefilling[:PROMPTS_TOGETHER])
        for sequence in list(self.active):
            if sequence.cancelled.is_set():
                self._retire(sequence, None)
            elif sequence.logits is not None:
                self._pick(sequence)
        decoding = [s for s in self.active if s.position > 0 and s.logits is None]
        if decoding:
            self._forward(decoding)

    def _admit(self) -> None:
        """Waiting sequences into free slots, in order; a prompt whose keys and values alone would pass the
        budget (in every slot: the slots are one tensor) is refused."""
        with self.wake:
            while self.waiting and len(self.active) < self.slots:
                sequence = self.waiting.pop(0)
                if sequence.cancelled.is_set():
                    sequence.steps.put(None)
                    continue
                if on_grid(len(sequence.prompt)) > self.capacity:
                    sequence.steps.put(BackendError(
                        f"the prompt needs {len(sequence.prompt)} positions of keys and values in each of {self.slots} "
                        f"slots, over the budget of {self.kv_budget_bytes / 2**20:.0f} MiB "
                        f"({self.capacity} positions); shorten it or serve with fewer --parallel"))
                    sequence.steps.put(None)
                    continue
                sequence.slot, sequence.order = len(self.active), next(self.admitted)
                self.active.append(sequence)

    @property
    def capacity(self) -> int:
        """How many positions each slot may hold within the budget."""
        return self.kv_budget_bytes // self.position_bytes // PREFILL_CHUNK * PREFILL_CHUNK

    def _fit(self) -> None:
        """Slots long enough for this step: each prompt, and each decoding sequence's next position. They grow
        as sequences do (doubling), not by what they might ask; one that would pass the budget ends there."""
        for sequence in list(self.active):
            if sequence.position >= self.capacity:
                self._retire(sequence, BackendError(
                    f"the keys and values budget ({self.kv_budget_bytes / 2**20:.0f} MiB, {self.capacity} positions in "
                    f"each of {self.slots} slots) ran out after {sequence.produced} tokens; ask for fewer max_tokens "
                    "or serve with fewer --parallel"))
        needed = on_grid(max((s.position or len(s.prompt)) + 1 for s in self.active)) if self.active else 0
        if needed > self.length:
            self._grow(min(max(needed, 2 * self.length), self.capacity))

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

    def _prefill_chunk(self, sequence: BatchSequence) -> None:
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
        self._from_row_0(sequence.slot, len(prompt))
        sequence.logits, sequence.position = logits, len(prompt)

    def _prefill_together(self, sequences: list[BatchSequence]) -> None:
        """The next chunk of each prompt in one forward, in the sequences' slots: several prompts arriving
        together get their first tokens together, not one after another."""
        model = self.model
        for sequence in sequences:
            if sequence.cached is None:  # its first chunk: start from what the prefix cache holds
                model.setup_cache(1, len(sequence.prompt))
                sequence.cached = sequence.prefilled = model.reusable_prefix(sequence.prompt)
                self._from_row_0(sequence.slot, sequence.prefilled)
        chunks = [s.prompt[s.prefilled : s.prefilled + PREFILL_CHUNK] for s in sequences]
        width = max(len(c) for c in chunks)
        device = model.device
        ids = torch.tensor([c + [0] * (width - len(c)) for c in chunks], device=device)
        rows = Rows(torch.tensor([s.prefilled for s in sequences], device=device),
                    on_grid(max(s.prefilled for s in sequences) + width),
                    slots=torch.tensor([s.slot for s in sequences], device=device),
                    last=torch.tensor([len(c) - 1 for c in chunks], device=device))
        logits = self._on_slots(lambda: model.compute(ids, rows)[:, -1])
        for row, (sequence, chunk) in enumerate(zip(sequences, chunks)):
            sequence.prefilled += len(chunk)
            if sequence.prefilled < len(sequence.prompt):
                continue
            sequence.logits, sequence.position = logits[row], len(sequence.prompt)
            whole, slot = len(sequence.prompt) - len(sequence.prompt) % PREFILL_CHUNK, sequence.slot
            model.snapshots.save(sequence.prompt[:whole], [(c.k[slot : slot + 1], c.v[slot : slot + 1]) for c in self.caches])

    def _from_row_0(self, slot: int, positions: int) -> None:
        """Copies the first `positions` keys and values of the model's own cache (row 0) into `slot`."""
        for layer, cache in zip(self.model.layers, self.caches):
            cache.k[slot, :, :positions] = layer.attention.cache.k[0, :, :positions]
            cache.v[slot, :, :positions] = layer.attention.cache.v[0, :, :positions]

    def _on_slots(self, forward: Callable[[], Tensor]) -> Tensor:
        """Runs `forward` with the layers reading and writing the slots' caches, not the model's own."""
        own = [layer.attention.cache for layer in self.model.layers]
        try:
            for layer, cache in zip(self.model.layers, self.caches):
                layer.attention.cache = cache
            return forward()
        finally:
            for layer, cache in zip(self.model.layers, own):
                layer.attention.cache = cache

    def _pick(self, sequence: BatchSequence) -> None:
        try:
            token, logprobs = sequence.sampler(sequence.logits)
        except BaseException as exc:  # a grammar at a dead end: this sequence ends with its error, the batch goes on
            self._retire(sequence, exc)
            return
        top, ids = alternatives(logprobs, sequence.alternatives, self.display)
        sequence.steps.put((token, float(logprobs[token]), top, ids, sequence.cached if sequence.produced == 0 else None))
        sequence.produced += 1
        sequence.logits, sequence.next_token = None, token
        if sequence.produced >= sequence.budget:
            self._retire(sequence, None)

    def _retire(self, sequence: BatchSequence, error: BaseException | None) -> None:
        if error is not None:
            sequence.steps.put(error)
        sequence.steps.put(None)
        last = self.active.pop()
        if last is not sequence:  # the last occupied row moves into the freed one: rows stay 0..n-1
            held = max(last.position, last.prefilled)  # a prompt still being computed has its chunks so far there
            for cache in self.caches:
                cache.k[sequence.slot, :, :held] = cache.k[last.slot, :, :held]
                cache.v[sequence.slot, :, :held] = cache.v[last.slot, :, :held]
            last.slot = sequence.slot
            self.active[last.slot] = last

    def _forward(self, decoding: list[BatchSequence]) -> None:
        """One token for every decoding sequence, in one forward over the occupied rows (or all, fixed_rows)."""
        count = self.slots if self.fixed_rows else len(self.active)
        ids = torch.zeros((count, 1), dtype=torch.long, device=self.model.device)
        positions = torch.zeros(count, dtype=torch.long, device=self.model.device)
        for sequence in decoding:
            ids[sequence.slot, 0], positions[sequence.slot] = sequence.next_token, sequence.position
        rows = Rows(positions, on_grid(max(s.position for s in decoding) + 1))
        logits = self._on_slots(lambda: self.model.compute(ids, rows)[:, -1])
        for sequence in decoding:
            sequence.logits, sequence.position = logits[sequence.slot], sequence.position + 1
