"""Gemma 3 and Phi-3 as their GGUFs come: SentencePiece vocabularies, their chat formats, their end-of-turn tokens."""

import pytest
import torch

from backends import GenerationRequest, Message, SamplingParams
from backends.local.backend import LocalBackend
from tests.fixtures.spm_models import GEMMA_SPECIALS, PHI3_SPECIALS, PHI3_TEMPLATE, spm_vocab
from tests.fixtures.tiny_models import GGMLQuantizationType, random_weights, tiny_config, write_gguf

CASES = {  # family: (specials, space prefix, template in the file, bos, eos, end of turn, prompt as rendered)
    "gemma3": (GEMMA_SPECIALS, False, None, "<bos>", "<eos>", "<end_of_turn>",
               "<bos><start_of_turn>user\nBe brief.\n\nhello world<end_of_turn>\n<start_of_turn>model\n"),
    "phi3": (PHI3_SPECIALS, True, PHI3_TEMPLATE, "<s>", "<|endoftext|>", "<|end|>",
             "<|system|>\nBe brief.<|end|>\n<|user|>\nhello world<|end|>\n<|assistant|>\n"),
}
MESSAGES = [Message(role="system", content="Be brief."), Message(role="user", content="hello world")]


def family_model(tmp_path, family, quant=None):
    specials, prefix, template, bos, eos, _, _ = CASES[family]
    vocab = spm_vocab(specials, add_space_prefix=prefix)
    cfg = tiny_config(family, len(vocab.tokens))
    path = write_gguf(tmp_path / f"{family}.gguf", cfg, random_weights(cfg), vocab, quant=quant, chat_template=template,
                      bos=bos, eos=eos)
    return path, vocab


@pytest.mark.parametrize("family", CASES)
@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_the_conversation_renders_and_ends_on_the_end_of_turn_token(tmp_path, family, precision):
    path, vocab = family_model(tmp_path, family, GGMLQuantizationType.Q8_0 if precision == "fast" else None)
    backend = LocalBackend(str(path), precision=precision, auto_pull=False)
    _, _, _, _, _, end_of_turn, rendered = CASES[family]
    assert backend.render(MESSAGES) == rendered
    ids = backend.tokenizer.encode(rendered)
    for token, _ in CASES[family][0]:  # every control or user-defined token of the prompt is its one id
        assert (token in rendered) == (vocab.id(token) in ids), token
    assert backend.tokenizer.decode(ids) == rendered
    end = vocab.id(end_of_turn)
    forced = backend.generate(GenerationRequest(messages=MESSAGES, sampling=SamplingParams(
        temperature=0, max_tokens=8, logit_bias={end: 100.0})))
    assert forced.finish_reason == "eos" and forced.text == ""
    free = backend.generate(GenerationRequest(messages=MESSAGES, sampling=SamplingParams(temperature=0, max_tokens=6)))
    assert free.usage.completion_tokens >= 1 and free.token_ids[0] < len(vocab.tokens)


def test_control_tokens_are_one_id_and_text_round_trips(tmp_path):
    path, vocab = family_model(tmp_path, "gemma3")
    backend = LocalBackend(str(path), auto_pull=False)
    ids = backend.tokenizer.encode("<start_of_turn>user\nthe lazy dog<end_of_turn>")
    assert ids[0] == vocab.id("<start_of_turn>") and ids[-1] == vocab.id("<end_of_turn>")
    with torch.inference_mode():
        logits = backend.logits(ids)
    assert logits.shape == (len(ids), len(vocab.tokens)) and torch.isfinite(logits).all()
