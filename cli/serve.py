"""`tokentrail serve`: our engine behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from cli.common import adapter_option, make_backend, precision_option


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _model_id(model: str | None) -> str:
    if model is None:
        return "smollm2"
    path = Path(model)
    return path.stem if path.suffix == ".gguf" else path.name if path.exists() else model


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; loopback unless you mean otherwise.")
@click.option("--port", "-p", type=int, default=8000, show_default=True)
@click.option("--api-key", envvar="TOKENTRAIL_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' (also $TOKENTRAIL_API_KEY).")
@click.option("--backend", "-b", default="local", show_default=True)
@click.option("--model", "-m", default=None, help="Model path or name (default: smollm2).")
@click.option("--max-waiting", type=int, default=64, show_default=True, help="Requests queued before answering 429.")
@click.option("--parallel", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Requests decoded together in one batch (local backend; 1: one at a time).")
@click.option("--embeddings/--no-embeddings", default=True, show_default=True,
              help="Serve /v1/embeddings when the embedding model (minilm) is pulled.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE")
@precision_option
@adapter_option
def serve(host: str, port: int, api_key: str | None, backend: str, model: str | None, max_waiting: int, parallel: int,
          embeddings: bool, options: tuple[str, ...], precision: str | None, adapter: str | None) -> None:
    """Serve the model over an OpenAI-compatible API (/v1/chat/completions, /v1/models, /v1/embeddings)."""
    from backends.local.model_cache import model_path
    from backends.server.app import OpenAIServer
    from backends.server.run import serve as run_server

    if not _is_loopback(host) and not api_key:
        click.echo(f"warning: serving on {host} without --api-key: anyone who can reach it can use it", err=True)
    if parallel > 1 and backend == "local":
        options = (*options, f"parallel={parallel}")
    engine = make_backend(backend, model, options, precision, adapter)
    embedder = None
    if embeddings and model_path("minilm").exists():
        from backends.embedders import load_embedder

        embedder = load_embedder("minilm")
    server = OpenAIServer(engine, model_id=_model_id(model), api_key=api_key, embedder=embedder, max_waiting=max_waiting)
    click.echo(f"serving {server.model_id}" + (f" and {embedder.name}" if embedder else "") +
               f" at http://{host}:{port}/v1", err=True)
    run_server(server, host=host, port=port)
