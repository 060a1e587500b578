"""Helpers shared by the command-line modules."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from backends import BackendError, load_backend
from backends.local.config import PRECISIONS
from backends.schemas import explain_validation


def version_string() -> str:
    try:
        return version("tokentrail")
    except PackageNotFoundError:
        return "0+unknown"


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--option")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def validation_message(exc: ValidationError) -> str:
    return explain_validation(exc, subject="option")


def pull_progress():
    """A rich progress bar for model pulls, as a (what, done, total) callback."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(TextColumn("unpacking {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   console=Console(stderr=True), transient=True)
    tasks: dict[str, int] = {}

    def update(what: str, done: int, total: int) -> None:
        if what not in tasks:
            bar.start()
            tasks[what] = bar.add_task(what, total=total)
        bar.update(tasks[what], completed=done)
        if done >= total:
            bar.stop()

    return update


precision_option = click.option(
    "--precision", type=click.Choice(PRECISIONS), default=None,
    help="Local engine: fast (default on CPU: GGUF weights stay quantized), exact (float32), "
         "int8 or int4 (float weights quantized at load too).")


adapter_option = click.option(
    "--adapter", default=None, type=click.Path(exists=True, file_okay=False),
    help="Local engine: a LoRA adapter folder from `tokentrail train`.")


def backend_options(name: str, model: str | None, options: tuple[str, ...], precision: str | None = None,
                    adapter: str | None = None) -> dict[str, Any]:
    kwargs = parse_options(options)
    if model is not None:
        kwargs["model"] = model
    for flag, value in (("precision", precision), ("adapter", adapter)):
        if value is not None:
            if name != "local":
                raise click.BadParameter(f"applies to the local backend, not {name!r}", param_hint=f"--{flag}")
            kwargs[flag] = value
    return kwargs


def make_backend(name: str, model: str | None, options: tuple[str, ...], precision: str | None = None,
                 adapter: str | None = None):
    kwargs = backend_options(name, model, options, precision, adapter)
    if name == "local":
        kwargs.setdefault("progress", pull_progress())
    try:
        return load_backend(name, **kwargs)
    except (BackendError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def memory_path(db: str | None) -> Path:
    from backends.paths import memory_database

    return Path(db) if db else memory_database()


def open_memory(db: str | None, embedder: bool = True, must_exist: bool = False):
    """The memory database `db` (default: $TOKENTRAIL_HOME/memory.db). must_exist: for commands that only
    read it, a path that names no database is an error, not a new empty one."""
    from memory import Memory, MemoryStoreError

    path = memory_path(db)
    if must_exist and not path.exists():
        raise click.ClickException(f"no memory database at {path}; `tokentrail memory add PATH` creates one, "
                                   "and `tokentrail run` logs into the default one")
    try:
        return Memory(path, embedder="minilm" if embedder else None)
    except MemoryStoreError as exc:
        raise click.ClickException(str(exc)) from exc


db_option = click.option("--memory", "--db", "db", default=None,
                         help="The memory database (default: $TOKENTRAIL_HOME/memory.db).")
