"""Chat templates come from model files: a hostile one cannot read files, run code or exhaust memory."""

import pytest

from backends import Message, ToolCall
from backends.local.chat_template import CHATML, ChatTemplateError, render_chat

USER = [Message(role="user", content="hi")]

HOSTILE = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ messages.append({'role': 'system'}) }}",
    "{{ messages[0].update({'content': 'pwned'}) }}",
    "{{ 'x' * 100000000 }}",
    "{{ [0] * 100000000 }}",
    "{{ 10 ** 100000 }}",
    "{{ raise_exception('nope') }}",
    "{% include '/etc/passwd' %}",
    "{% for i in range(10**9) %}{% endfor %}",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_templates_are_stopped(template):
    with pytest.raises(ChatTemplateError):
        render_chat(template, USER)


def test_private_attributes_render_as_nothing():
    assert render_chat("[{{ self._TemplateReference__context }}{{ messages.__class__ }}]", USER) == "[]"


def test_output_size_is_capped():
    template = "{% for i in range(100000) %}{{ 'y' * 99999 }}{% endfor %}"
    with pytest.raises(ChatTemplateError, match="more than"):
        render_chat(template, USER)


def test_broken_template_names_the_problem():
    with pytest.raises(ChatTemplateError, match="does not parse"):
        render_chat("{% for %}", USER)


def test_hugging_face_variables_and_tools():
    template = (
        "{{ bos_token }}{% if tools %}TOOLS:{{ tools | tojson }}\n{% endif %}"
        "{% for m in messages %}{{ m.role }}:{{ m.content }}"
        "{% for c in m.tool_calls or [] %}[{{ c.function.name }} {{ c.function.arguments.a }}]{% endfor %}\n"
        "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}{{ eos_token }}"
    )
    messages = [
        Message(role="user", content="add"),
        Message(role="assistant", tool_calls=[ToolCall.create("c1", "add", {"a": 1})]),
        Message(role="tool", content="2", tool_call_id="c1"),
    ]
    tools = [{"type": "function", "function": {"name": "add", "parameters": {}}}]
    text = render_chat(template, messages, tools=tools, bos_token="<s>", eos_token="</s>")
    assert text == (
        '<s>TOOLS:[{"type": "function", "function": {"name": "add", "parameters": {}}}]\n'
        "user:addassistant:[add 1]tool:2assistant:</s>"  # trim_blocks eats the newline after a block tag
    )


def test_chatml_fallback():
    assert render_chat(CHATML, USER) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_gemma3_files_without_a_template_get_gemmas_format(tmp_path):
    from backends.local.chat_template import family_template
    from backends.local.loader import load_model
    from tests.fixtures.tiny_models import random_weights, tiny_config, tiny_tokenizer, write_gguf

    template = family_template("gemma3")
    messages = [Message(role="system", content="Be brief."), Message(role="user", content=" Hi "),
                Message(role="assistant", content="Hello."), Message(role="tool", content="42", tool_call_id="c1"),
                Message(role="user", content="And?")]
    assert render_chat(template, messages, bos_token="<bos>") == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\n42<end_of_turn>\n<start_of_turn>user\nAnd?<end_of_turn>\n<start_of_turn>model\n")
    assert family_template("llama") is None
    tokenizer = tiny_tokenizer(["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"])
    cfg = tiny_config("gemma3", tokenizer.get_vocab_size(with_added_tokens=True))
    gguf = write_gguf(tmp_path / "gemma.gguf", cfg, random_weights(cfg), tokenizer, chat_template="", bos="<bos>",
                      eos="<eos>")
    loaded = load_model(gguf)
    assert loaded.chat_template == template
    assert loaded.tokenizer.eos_token_ids == (1, 4)  # <eos>, and <end_of_turn> ends a turn
