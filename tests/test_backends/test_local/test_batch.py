"""Continuous batching: sequences decoded together give what each gives alone, and one's end is not the others'."""

import threading
import time

import pytest

from backends import BackendError, GenerationError, GenerationRequest, Message, SamplingParams
from backends.local.backend import LocalBackend
from backends.local.batch import BatchSequence

QUESTIONS = ["the quick brown fox", "hello world " * 4, "a", "the lazy dog sleeps " * 5, "one two three",
             "jumps over", "fox " * 20, "brown"]  # prompts of about 10 to 110 tokens: rows at different positions


def request(i: int, max_tokens: int = 12) -> GenerationRequest:
    return GenerationRequest(messages=[Message(role="user", content=QUESTIONS[i % len(QUESTIONS)])],
                             sampling=SamplingParams(temperature=1.0, top_p=0.95, seed=i, max_tokens=max_tokens, logprobs=2))


def together(backend, requests):
    """Each request's (token, logprob) pairs, all of them started at once from their own threads."""
    results = [None] * len(requests)

    def run(i):
        results[i] = [(e.token_id, e.logprob) for e in backend.stream(requests[i])]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


@pytest.mark.parametrize(("family", "precision"), [("qwen2", "exact"), ("qwen2", "fast"), ("gemma3", "exact")])
def test_a_seeded_request_samples_the_same_tokens_alone_or_among_seven_others(tiny_models, family, precision):
    backend = LocalBackend(str(tiny_models[family][1]), precision=precision, auto_pull=False, parallel=8)
    requests = [request(i, max_tokens=6 + 3 * i) for i in range(8)]  # they end one by one: rows move down
    alone = [[(e.token_id, e.logprob) for e in backend.stream(r)] for r in requests]
    assert together(backend, requests) == alone
    assert together(backend, requests[::-1]) == alone[::-1]  # other slots, other neighbours
    if precision == "exact":  # and what the one-at-a-time engine gives
        serial = LocalBackend(str(tiny_models[family][1]), precision=precision, auto_pull=False)
        assert [[(e.token_id, e.logprob) for e in serial.stream(r)] for r in requests] == alone


def test_a_consumer_that_stops_frees_its_slot_for_a_waiting_request(tiny_models):
    backend = LocalBackend(str(tiny_models["qwen2"][1]), auto_pull=False, parallel=2)
    long = [request(i, max_tokens=200) for i in range(2)]
    first = backend.stream(long[0])
    next(first)
    second = threading.Thread(target=lambda: list(backend.stream(long[1])))
    second.start()
    first.close()  # a client that disconnects
    started = time.monotonic()
    third = backend.generate(request(3, max_tokens=5))  # would wait for a slot until the long ones end
    assert third.usage.completion_tokens == 5 and second.is_alive()
    assert time.monotonic() - started < 60
    second.join(timeout=120)


def test_one_sequence_failing_ends_that_request_and_not_the_batch(tiny_models):
    backend = LocalBackend(str(tiny_models["qwen2"][1]), auto_pull=False, parallel=4)

    class DeadEnd:
        def __call__(self, logits):
            raise GenerationError("the grammar allows no next token (dead end)")

    broken = backend.batcher.submit(BatchSequence(prompt=[5, 6, 7], sampler=DeadEnd(), budget=8, alternatives=0))
    healthy = threading.Thread(target=lambda: results.append(backend.generate(request(1))))
    results = []
    healthy.start()
    with pytest.raises(GenerationError, match="dead end"):
        list(broken)
    healthy.join(timeout=120)
    assert results and results[0].usage.completion_tokens == 12


def test_parallel_must_be_a_sensible_number(tiny_models):
    for bad in (0, 65, 2.5):
        with pytest.raises(BackendError, match="parallel must be a whole number from 1 to 64"):
            LocalBackend(str(tiny_models["qwen2"][1]), auto_pull=False, parallel=bad)


def test_slots_grow_as_sequences_do_and_the_memory_budget_ends_only_the_one_past_it(tiny_models):
    backend = LocalBackend(str(tiny_models["qwen2"][1]), auto_pull=False, parallel=2)
    batcher = backend.batcher
    batcher.kv_budget_bytes = batcher.position_bytes * 128  # 128 positions in each slot
    short = [request(i, max_tokens=30) for i in (0, 2)]
    assert [len(r) for r in together(backend, short)] == [30, 30]
    assert batcher.length <= 128  # grown to what they used, not to what they might have asked
    with pytest.raises(BackendError, match=r"budget .* ran out after \d+ tokens; ask for fewer max_tokens"):
        backend.generate(request(0, max_tokens=200))
    with pytest.raises(BackendError, match=r"the prompt needs \d+ positions .* over the budget"):
        backend.generate(GenerationRequest(messages=[Message(role="user", content="fox " * 60)]))
    assert backend.generate(request(2, max_tokens=4)).usage.completion_tokens == 4  # the engine goes on


def test_a_closed_engine_refuses_new_requests_and_says_why(tiny_models):
    backend = LocalBackend(str(tiny_models["qwen2"][1]), auto_pull=False, parallel=2)
    assert backend.generate(request(1, max_tokens=3)).usage.completion_tokens == 3
    backend.batcher.close()
    assert backend.batcher.thread is None
    with pytest.raises(BackendError, match="batching engine is closed"):
        backend.generate(request(1, max_tokens=3))


@pytest.mark.parametrize(("precision", "tolerance"), [("exact", 1e-4), ("fast", 0.05)])
def test_prompts_arriving_together_are_computed_in_one_forward_a_chunk_and_as_each_alone(tiny_models, precision, tolerance):
    backend = LocalBackend(str(tiny_models["qwen2"][1]), precision=precision, auto_pull=False, parallel=4)
    batcher, model = backend.batcher, backend.loaded.model
    batcher.fixed_rows = False  # exact precision prefills one prompt at a time unless told otherwise
    prompts = [[(7 * i + n) % 200 + 5 for i in range(n)] for n in (3, 40, 90, 150)]  # 1, 1, 2 and 3 chunks
    widths = []
    compute = model.compute
    model.compute = lambda ids, start, *rest: widths.append(tuple(ids.shape)) or compute(ids, start, *rest)
    alone = []
    for prompt in prompts:
        model.setup_cache(1, len(prompt))
        alone.append(model.prefill(prompt, 0).log_softmax(-1))

    class Greedy:
        def __init__(self):
            self.seen = None

        def __call__(self, logits):
            self.seen = logits.log_softmax(-1)
            return int(logits.argmax()), self.seen

    samplers = [Greedy() for _ in prompts]
    widths.clear()
    model.snapshots.clear()
    model.cached = []  # nothing to reuse: every chunk is computed
    with batcher.lock:  # the scheduler waits: all four are admitted before its first step
        streams = [batcher.submit(BatchSequence(prompt=p, sampler=s, budget=1, alternatives=0))
                   for p, s in zip(prompts, samplers)]
        time.sleep(0.2)
    for stream in streams:
        assert len(list(stream)) == 1
    prefills = [w for w in widths if w[1] > 1]
    assert prefills == [(4, 64), (2, 64), (1, 22)]  # chunk by chunk, the prompts still prefilling together
    for seen, expected in zip(samplers, alone):
        assert int(seen.seen.argmax()) == int(expected.argmax())
        assert (seen.seen.exp() - expected.exp()).abs().max() < tolerance
    model.setup_cache(1, len(prompts[3]))
    assert model.reusable_prefix(prompts[3]) == 128  # a finished prompt's whole chunks are shared with later ones


def test_a_prompt_being_computed_keeps_its_chunks_when_its_row_moves_down(tiny_models):
    """A request admitted before the one that ended is retired: when its row moves into the freed one, the
    chunks computed so far move with it (they were lost, and BFCL through serve fell from 80% to 67%)."""
    backend = LocalBackend(str(tiny_models["qwen2"][1]), precision="exact", auto_pull=False, parallel=2)
    batcher, model = backend.batcher, backend.loaded.model
    batcher.fixed_rows = False
    prompt = [(7 * i) % 200 + 5 for i in range(150)]  # three chunks
    model.setup_cache(1, len(prompt))
    expected = model.prefill(prompt, 0).log_softmax(-1)
    model.snapshots.clear()
    model.cached = []

    class Greedy:
        def __call__(self, logits):
            self.seen = logits.log_softmax(-1)
            return int(logits.argmax()), self.seen

    first, second = Greedy(), Greedy()
    ending = batcher.submit(BatchSequence(prompt=[5, 6, 7], sampler=first, budget=50, alternatives=0))
    next(ending)
    with batcher.lock:  # the next prompt is admitted into row 1 while row 0's sequence is still there
        stream = batcher.submit(BatchSequence(prompt=prompt, sampler=second, budget=1, alternatives=0))
        ending.close()
        batcher._step()  # its first chunk in row 1; the closed one retired: row 1 moves to row 0
        assert len(batcher.active) == 1 and batcher.active[0].prefilled == 64
    assert len(list(stream)) == 1
    assert (second.seen - expected).abs().max() < 1e-3
