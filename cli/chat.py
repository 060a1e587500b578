"""`tokentrail chat`: the Textual UI (or, with --plain, a line-based chat for pipes)."""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from backends import SamplingParams, load_backend
from cli.common import (
    adapter_option,
    backend_options,
    make_backend,
    memory_path,
    precision_option,
    pull_progress,
    validation_message,
)
from cli.run import SAFE_TOOLS, selected_tools


def _pull_default_model() -> None:
    """Fetches the default model before the UI starts, so its progress bar shows in the terminal."""
    from backends.local.model_cache import DEFAULT_MODEL, PullError, model_path, pull

    if not model_path(DEFAULT_MODEL).exists():
        click.echo("fetching the default model (first use) ...", err=True)
        try:
            pull(DEFAULT_MODEL, progress=pull_progress())
        except PullError as exc:
            click.echo(f"warning: {exc}", err=True)  # the UI shows the load error too


def _open_memory(path: str | None, enabled: bool) -> Any:
    if not enabled:
        return None
    from backends.local.model_cache import model_path
    from memory import Memory, MemoryStoreError

    try:  # vectors only when the embedding model is already here: chat never waits on a download
        return Memory(memory_path(path), embedder="minilm" if model_path("minilm").exists() else None)
    except MemoryStoreError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.option("--backend", "-b", default="local", show_default=True)
@click.option("--model", "-m", default=None, help="Model path or name (default: smollm2, pulled on first use).")
@click.option("--memory", "memory_db", default=None, help="Memory database for recall and saved conversations "
              "(default: $TOKENTRAIL_HOME/memory.db).")
@click.option("--no-memory", is_flag=True, help="Neither recall nor save conversations.")
@click.option("--tools", "tool_names", default=None, help=f"Comma-separated tool names (default: {','.join(SAFE_TOOLS)}).")
@click.option("--workspace", "-w", type=click.Path(file_okay=False, exists=True), default=".", show_default=True)
@click.option("--temperature", "-t", type=float, default=0.0, show_default=True)
@click.option("--max-tokens", "-n", type=int, default=300, show_default=True)
@click.option("--seed", type=int, default=None)
@click.option("--plain", is_flag=True, help="A line-based chat without the agent, for pipes and dumb terminals.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE")
@precision_option
@adapter_option
def chat(backend: str, model: str | None, memory_db: str | None, no_memory: bool, tool_names: str | None,
         workspace: str, temperature: float, max_tokens: int, seed: int | None, plain: bool,
         options: tuple[str, ...], precision: str | None, adapter: str | None) -> None:
    """Chat with the agent and watch it decode, call tools and verify."""
    try:
        sampling = SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed, logprobs=5)
    except ValidationError as exc:
        raise click.BadParameter(validation_message(exc)) from exc
    if plain:
        from cli.chat_repl import chat_loop

        chat_loop(make_backend(backend, model, options, precision, adapter), sampling)
        return
    from tui import TokentrailApp

    kwargs = backend_options(backend, model, options, precision, adapter)
    if backend == "local" and model is None:
        _pull_default_model()
        kwargs.setdefault("auto_pull", False)
    registry = selected_tools(workspace, tool_names)
    store = _open_memory(memory_db, enabled=not no_memory)
    try:
        TokentrailApp(lambda: load_backend(backend, **kwargs), tools=registry, memory=store, sampling=sampling).run()
    finally:
        if store is not None:
            store.close()
