"""Constrained decoding on the real default model: every output parses and validates.

The schemas bound their strings and arrays: a grammar guarantees a valid document only
when one fits in max_tokens (a sampled string may otherwise run on forever).
"""

import re
from enum import Enum
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from backends import BackendError, Constraint, GenerationRequest, Message, SamplingParams
from backends.local.constraints import bridge

pytestmark = pytest.mark.model


class Colour(str, Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Point(BaseModel):
    x: float
    y: float


class Shape(BaseModel):
    name: str = Field(max_length=12)
    colour: Colour
    corners: list[Point] = Field(max_length=3)


Word = Annotated[str, Field(max_length=16)]


class Inventory(BaseModel):
    items: list[Word] = Field(max_length=3)
    count: int = Field(ge=0, le=99)
    in_stock: bool


class Verdict(BaseModel):
    passed: bool
    reasons: list[Annotated[str, Field(max_length=60)]] = Field(max_length=2)


def ask(backend, prompt, constraint, **sampling):
    request = GenerationRequest(
        messages=[Message(role="user", content=prompt)],
        sampling=SamplingParams(max_tokens=sampling.pop("max_tokens", 160), **sampling),
        constraint=constraint,
    )
    return backend.generate(request)


@pytest.mark.parametrize(
    ("model", "prompt"),
    [(Shape, "Describe a triangle as JSON."), (Inventory, "List a shop's fruit as JSON."),
     (Verdict, "Is 2+2=5? Answer as JSON.")],
)
@pytest.mark.parametrize(("temperature", "seed"), [(0.0, None), (0.7, 1), (1.0, 2), (1.0, 3)])
def test_json_schema_output_always_validates(smollm2, model, prompt, temperature, seed):
    out = ask(smollm2, prompt, Constraint.from_model(model), temperature=temperature, seed=seed, max_tokens=400)
    assert out.finish_reason == "eos", out.text
    model.model_validate_json(out.text)


def test_regex_constraint_matches(smollm2):
    pattern = r"\(\d{3}\) \d{3}-\d{4}"
    for seed in range(3):
        out = ask(smollm2, "Give me a phone number.", Constraint(regex=pattern), temperature=1.0, seed=seed, max_tokens=30)
        assert re.fullmatch(pattern, out.text), out.text


def test_lark_grammar(smollm2):
    grammar = 'start: "The answer is " NUMBER "."\nNUMBER: /[0-9]{1,3}/'
    out = ask(smollm2, "What is 6 times 7?", Constraint(grammar=grammar), temperature=0)
    assert re.fullmatch(r"The answer is [0-9]{1,3}\.", out.text)


def test_a_grammar_that_forbids_eos_runs_to_max_tokens(smollm2):
    out = ask(smollm2, "Say something.", Constraint(regex=r"[a-z]{400}"), temperature=1.0, seed=0, max_tokens=12)
    assert out.finish_reason == "length" and len(out.token_ids) == 12
    assert re.fullmatch(r"[a-z]+", out.text)


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        (Constraint(json_schema={"type": "bogus"}), "invalid JSON Schema"),
        (Constraint(json_schema={"type": "integer", "minimum": 5, "maximum": 1}), "Unsatisfiable schema"),
        (Constraint(json_schema={"properties": {"a": {"$ref": "#/definitions/missing"}}}), "does not exist"),
        (Constraint(regex=r"(?=a)a+"), "invalid regex"),  # Python accepts lookahead; llguidance does not
        (Constraint(grammar="start: undefined_rule"), "invalid Lark grammar"),
    ],
)
def test_bad_constraints_fail_before_generation(smollm2, constraint, message):
    request = GenerationRequest(messages=[Message(role="user", content="x")], constraint=constraint)
    with pytest.raises(BackendError, match=message):
        smollm2.stream(request)  # raises on the call, before a single token is decoded


def test_the_tokenizer_bridge_is_built_once(smollm2):
    vocab = smollm2.loaded.config.vocab_size
    assert bridge(smollm2.tokenizer, vocab) is bridge(smollm2.tokenizer, vocab)
