"""Branching: continue a reply from its first tokens, one of them swapped for an alternative it beat."""

import pytest

from backends import BackendError, Constraint, GenerationRequest, Message, SamplingParams
from backends.local.backend import LocalBackend

LONG = [Message(role="user", content="the quick brown fox jumps over the lazy dog " * 10)]


def request(max_tokens: int = 10, **extra) -> GenerationRequest:
    return GenerationRequest(messages=LONG, sampling=SamplingParams(temperature=0, max_tokens=max_tokens, logprobs=3),
                             **extra)


@pytest.fixture(scope="module")
def backend(tiny_models):
    return LocalBackend(str(tiny_models["qwen2"][1]), precision="exact", auto_pull=False)


def test_a_branch_on_the_chosen_tokens_goes_on_as_the_reply_did(backend):
    reply = backend.generate(request())
    branch = list(backend.continue_from(request(), reply.token_ids[:4]))
    assert [e.token_id for e in branch] == reply.token_ids[4:]
    assert "".join(e.text for e in branch) == reply.text[len(backend.tokenizer.decode(reply.token_ids[:4])):]
    assert branch[-1].finish_reason == reply.finish_reason
    assert branch[0].cached_prompt_tokens > 0  # the prompt's whole chunks came from the cache


def test_a_branch_from_an_alternative_takes_another_way(backend):
    reply = backend.generate(request())
    alternative = reply.events[2].top_token_ids[1]
    assert reply.events[2].top_logprobs[1][0] == backend.tokenizer.display(alternative)
    branch = backend.continue_from(request(), [*reply.token_ids[:2], alternative])
    tokens = [e.token_id for e in branch]
    assert len(tokens) == 10 - 3 and tokens != reply.token_ids[3:]


def test_bad_branches_are_refused_with_the_reason(backend):
    vocab = backend.loaded.config.vocab_size
    with pytest.raises(BackendError, match=r"must lie in \[0, "):
        backend.continue_from(request(), [vocab])
    with pytest.raises(BackendError, match="ends the reply"):
        backend.continue_from(request(), [backend.tokenizer.eos_token_id])
    with pytest.raises(BackendError, match="no room is left under max_tokens 3"):
        backend.continue_from(request(max_tokens=3), [5, 6, 7])
    digits = request(constraint=Constraint(regex="[0-9]+"))
    letter = backend.tokenizer.encode("x")[0]
    with pytest.raises(BackendError, match="token 0 of the branch.*constraint does not allow"):
        backend.continue_from(digits, [letter])
    after = list(backend.continue_from(digits, backend.tokenizer.encode("4")))  # the grammar moved past the given digit
    assert "".join(e.text for e in after).isdigit() or after[-1].finish_reason == "eos"


def test_the_readme_branch_example_runs(backend):
    from tests.test_agent.test_readme import example

    code = example("**What else it could have said.**")
    namespace = {"backend": backend, "request": request(max_tokens=8).model_copy(
        update={"sampling": SamplingParams(temperature=0, max_tokens=8, logprobs=5)})}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["other"] != namespace["reply"].token_ids[3]
    assert namespace["event"].finish_reason is not None  # the branch ran to its end
