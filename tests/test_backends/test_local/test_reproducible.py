"""Same request, same seed, same tokens: whatever the KV cache and the prefix copies hold."""

import pytest

from agent import Agent
from backends import GenerationRequest, Message, SamplingParams, load_backend
from backends.local.model import PREFILL_CHUNK
from tests.fixtures.tiny_models import GGMLQuantizationType as QT
from tests.fixtures.tiny_models import random_weights, tiny_config, tiny_tokenizer, write_gguf

SEEDED = SamplingParams(temperature=1.0, top_p=0.95, seed=11, max_tokens=40)
SYSTEM = "You are terse. " * 5  # the tiny tokenizer spells most words out: about 100 tokens


def request(question: str, sampling: SamplingParams = SEEDED, system: str = SYSTEM) -> GenerationRequest:
    return GenerationRequest(messages=[Message(role="system", content=system), Message(role="user", content=question)],
                             sampling=sampling)


@pytest.fixture(scope="module", params=["fast", "exact"])
def tiny(request, tmp_path_factory):
    tokenizer = tiny_tokenizer()
    cfg = tiny_config("qwen2", tokenizer.get_vocab_size(with_added_tokens=True)) | {
        "max_position_embeddings": 2048, "hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 8,
        "num_key_value_heads": 2, "intermediate_size": 512}
    path = write_gguf(tmp_path_factory.mktemp("seeded") / "qwen2.gguf", cfg, random_weights(cfg), tokenizer, quant=QT.Q4_0)
    return str(path), request.param


def fresh(tiny):
    path, precision = tiny
    return load_backend("local", model=path, precision=precision)


def tokens(backend, req: GenerationRequest) -> list[tuple[int, float]]:
    """Each token with its log-probability: equal to the last bit, not only the same argmax or draw."""
    return [(e.token_id, e.logprob) for e in backend.stream(req)]


def test_a_reused_prompt_samples_what_a_cold_one_does(tiny):
    backend, req = fresh(tiny), request("the quick brown fox")
    cold = tokens(backend, req)
    reused = backend.generate(req)
    assert reused.usage.cached_prompt_tokens == (reused.usage.prompt_tokens - 1) // PREFILL_CHUNK * PREFILL_CHUNK > 0
    assert [(e.token_id, e.logprob) for e in reused.events] == cold == tokens(fresh(tiny), req)


def test_unrelated_prompts_alternating_prompts_and_a_beam_search_change_nothing(tiny):
    backend = fresh(tiny)
    a, b = request("the quick brown fox"), request("hello world " * 3)
    expected_a, expected_b = tokens(fresh(tiny), a), tokens(fresh(tiny), b)
    assert tokens(backend, b) == expected_b  # an unrelated prompt first, of another length
    for _ in range(2):
        assert tokens(backend, a) == expected_a and tokens(backend, b) == expected_b
    beam = SamplingParams(temperature=0, max_tokens=6, beam_width=3)
    backend.generate(request("the quick brown fox", beam))
    assert tokens(backend, a) == expected_a
    backend.logits(list(range(5, 150)))
    assert tokens(backend, b) == expected_b


def test_a_conversation_that_goes_on_samples_what_a_cold_one_does(tiny):
    """The reply's keys and values were made one token at a time: they are computed again, not reused."""
    backend = fresh(tiny)
    first = request("the quick brown fox")
    reply = backend.generate(first).text
    follow = GenerationRequest(messages=[*first.messages, Message(role="assistant", content=reply),
                                         Message(role="user", content="and then?")], sampling=SEEDED)
    assert tokens(backend, follow) == tokens(fresh(tiny), follow)


def test_the_default_model_samples_the_same_tokens_cold_and_reused(smollm2):
    system = "You are a storyteller who writes for children. Keep every story short, kind and simple. " * 3
    req = request("Tell me a short story about a cat and a ship.", SEEDED.model_copy(update={"max_tokens": 60}), system)
    first = tokens(smollm2, req)
    smollm2.generate(request("What is the capital of France?", system=system))
    second = smollm2.generate(req)
    assert second.usage.cached_prompt_tokens > 0 and [(e.token_id, e.logprob) for e in second.events] == first


def test_a_seeded_agent_run_repeats(tiny):
    def word_count(text: str) -> int:
        """Count the words in a text."""
        return len(text.split())

    backend = fresh(tiny)
    runs = [Agent(backend, tools=[word_count], sampling=SEEDED, max_steps=2).run("How many words in 'a b c'?")
            for _ in range(2)]
    events = [[e.model_dump_json(exclude={"duration", "timestamp", "elapsed"}) for e in r.events if e.type == "token"]
              for r in runs]
    assert events[0] == events[1] and events[0]
