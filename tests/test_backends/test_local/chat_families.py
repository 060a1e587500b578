"""Tiny GGUF models of the families people call tools with: their chat templates as the models
ship them (templates/), and vocabularies in which the tool tags are single tokens, typed the way
the real files type them (Qwen2.5's <tool_call> is a user-defined token, Mistral's [TOOL_CALLS]
and Llama's headers are control tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.test_backends.test_local.tiny import random_weights, tiny_config, tiny_tokenizer, write_gguf

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class ChatFamily:
    arch: str  # tiny_config's family
    template: str  # file under templates/
    specials: list[str]
    added: list[str]
    bos: str
    eos: str
    pre: str


FAMILIES = {
    "qwen2.5": ChatFamily("qwen2", "qwen2.5-instruct.jinja", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                          ["<tool_call>", "</tool_call>"], "<|endoftext|>", "<|im_end|>", "qwen2"),
    "llama3.1": ChatFamily("llama", "llama3.1-instruct.jinja",
                           ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                            "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"], [], "<|begin_of_text|>", "<|eot_id|>",
                           "llama-bpe"),
    "mistral": ChatFamily("mistral", "mistral-7b-instruct-v0.3.jinja",
                          ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]",
                           "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"], [], "<s>", "</s>", "default"),
}


def template(name: str) -> str:
    return (TEMPLATES / FAMILIES[name].template).read_text()


def build_chat_model(tmp: Path, name: str, seed: int = 0, context: int = 2048) -> Path:
    """A tiny random-weight GGUF of the family `name`, with its shipped chat template."""
    family = FAMILIES[name]
    tokenizer = tiny_tokenizer(family.specials, family.added)
    cfg = tiny_config(family.arch, tokenizer.get_vocab_size(with_added_tokens=True)) | {"max_position_embeddings": context}
    return write_gguf(tmp / f"{name}.gguf", cfg, random_weights(cfg, seed), tokenizer, chat_template=template(name),
                      pre=family.pre, bos=family.bos, eos=family.eos)
