"""`tokentrail generate` and `chat --plain` where a user could be misled: beams, cut-off constrained output, labels."""

import json
from io import StringIO

from click.testing import CliRunner
from rich.console import Console

from backends import SamplingParams
from backends.scripted import ScriptedBackend
from backends.server.app import OpenAIServer
from cli import main
from cli.chat_repl import chat_loop


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_beam_search_picks_its_own_temperature_and_says_so():
    result = run("generate", "a b c", "-b", "scripted", "--beam-width", "3")
    assert "beam search is deterministic: temperature 0" in result.output
    assert "set temperature=0" not in result.output
    refused = run("generate", "a b c", "-b", "scripted", "--beam-width", "3", "-t", "0.7")
    assert refused.exit_code == 2 and "temperature=0" in refused.output  # an explicit choice is not overridden


def test_constrained_output_cut_off_by_max_tokens_fails_loudly(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"colours": {"type": "array"}}}))
    result = run("generate", "one two three four five six seven", "-b", "scripted", "--json-schema", str(schema), "-n", "3")
    assert result.exit_code == 1 and "does not match the constraint yet; raise --max-tokens" in result.output
    plain = run("generate", "one two three four five six seven", "-b", "scripted", "-n", "3")
    assert plain.exit_code == 0 and "[stopped at --max-tokens 3]" in plain.output


def test_the_plain_chat_labels_the_reply():
    lines = iter(["hello", "/quit"])
    out = StringIO()
    chat_loop(ScriptedBackend(replies=["Hi there."]), SamplingParams(), read=lambda _: next(lines), console=Console(file=out))
    assert "assistant> Hi there." in out.getvalue()


def test_an_unknown_model_is_answered_with_the_names_the_server_lists():
    from starlette.testclient import TestClient

    client = TestClient(OpenAIServer(ScriptedBackend(), model_id="mine").app)
    reply = client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 404 and "this server has 'mine'." in reply.json()["error"]["message"]
    assert client.post("/v1/chat/completions", json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
                       ).status_code == 200  # the model's own name is still accepted
