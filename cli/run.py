"""`tokentrail tools ...` and `tokentrail run`: the tool registry and the agent loop."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from cli.common import adapter_option, make_backend, open_memory, precision_option


@click.group(invoke_without_command=True)
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


SAFE_TOOLS = ("calculator", "current_time", "list_files", "read_file", "search_files")


def selected_tools(workspace: str, tool_names: str | None, approver: Any = None):
    """The named built-in or plugin tools (default: SAFE_TOOLS) as a registry."""
    from tools import ToolRegistry

    everything = ToolRegistry.with_builtins(workspace)
    for problem in everything.load_entry_points():
        click.echo(f"warning: {problem}", err=True)
    wanted = [n.strip() for n in tool_names.split(",") if n.strip()] if tool_names is not None else list(SAFE_TOOLS)
    unknown = [n for n in wanted if n not in everything]
    if unknown:
        raise click.BadParameter(f"unknown tools {unknown}; known: {', '.join(everything.names())}", param_hint="--tools")
    return ToolRegistry([everything.get(n) for n in wanted], approver=approver)


def _print_event(event: Any) -> None:
    kind = event.type
    if kind == "plan" and event.direct:
        click.secho("no plan: answering directly", bold=True)
    elif kind == "plan":
        click.secho("replan:" if event.replan else "plan:", bold=True)
        for i, step in enumerate(event.steps, start=1):
            click.echo(f"  {i}. {step}")
    elif kind == "memory":
        for hit in event.hits:
            why = f" ({hit['why']})" if hit.get("why") else ""
            click.echo(f"memory [{hit['chunk_id']}] {hit['source']}{why}: {' '.join(hit['text'].split())[:100]}")
    elif kind == "tool_call":
        click.secho(f"-> {event.name}({json.dumps(event.arguments, ensure_ascii=False)})", fg="cyan")
    elif kind == "tool_result":
        shown = event.output if event.ok else f"error: {event.error}"
        click.secho(f"<- {' '.join(shown.split())[:300]}  ({event.duration * 1000:.0f} ms)", fg="green" if event.ok else "red")
    elif kind == "verdict":
        click.secho(f"verdict ({event.by}): {'passed' if event.passed else 'failed'} {'; '.join(event.reasons)}",
                    fg="green" if event.passed else "yellow")
        if event.mended_by:
            click.echo(f"  mended by {', '.join(event.mended_by)}; the model wrote: {' '.join(event.model_answer.split())[:300]}")
    elif kind == "steer":
        click.echo(f"(next turn: {event.tool_choice}, {event.policy}: {event.why})")
    elif kind == "context":
        click.echo(f"(context: {event.action.replace('_', ' ')}, {event.tokens_before} -> {event.tokens_after} tokens)")
    elif kind == "error":
        click.secho(f"error: {event.message}", fg="red")
    elif kind == "final":
        label = "answer (verified)" if event.verified else "answer (not verified)"
        click.secho(f"{label}: {event.answer}" if event.answer is not None else f"no answer: {event.reason}", bold=True)


def _refuse_without_yes(request: Any) -> str:
    return "`tokentrail run` asks no questions; run it again with --yes to allow tools that ask for approval"


EXIT_VERIFIED, EXIT_NO_ANSWER, EXIT_UNVERIFIED, EXIT_INTERRUPTED = 0, 1, 3, 130


@contextmanager
def _ctrl_c_recorded(seen: list[int]) -> Iterator[None]:
    """Notes each Ctrl+C: one that lands inside a lock's release (the tool thread pool's) reaches the caller
    as RuntimeError("release unlocked lock"), not KeyboardInterrupt."""
    ours = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if threading.current_thread() is not threading.main_thread() or not ours:
        yield  # not ours to change: an ignored Ctrl+C (a background job) stays ignored
        return

    def interrupt(signum: int, frame: Any) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@click.command("run", epilog="Exit status: 0 a verified answer; 3 an answer that failed verification; 1 no answer "
                             "(the step budget ran out, or the model failed); 2 bad usage; 130 interrupted.")
@click.argument("task")
@click.option("--backend", "-b", default="local", show_default=True)
@click.option("--model", "-m", default=None)
@click.option("--tools", "tool_names", default=None,
              help=f"Comma-separated tool names (default: {','.join(SAFE_TOOLS)}); any built-in or plugin tool.")
@click.option("--workspace", "-w", type=click.Path(file_okay=False, exists=True), default=".", show_default=True)
@click.option("--memory", "memory_path", default=None,
              help="A memory database to recall from and log into (default: log into $TOKENTRAIL_HOME/memory.db, no recall).")
@click.option("--no-log", is_flag=True, help="Record nothing of this run.")
@click.option("--json", "as_json", is_flag=True, help="One event per line, as JSON.")
@click.option("--tokens", is_flag=True, help="With --json, also each token the model chose.")
@click.option("--yes", "-y", is_flag=True, help="Approve tools that ask for approval (write_file, python).")
@click.option("--max-steps", type=click.IntRange(min=1), default=6, show_default=True, help="Act turns at most.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE")
@precision_option
@adapter_option
def run_agent(task: str, backend: str, model: str | None, tool_names: str | None, workspace: str,
              memory_path: str | None, no_log: bool, as_json: bool, tokens: bool, yes: bool, max_steps: int,
              options: tuple[str, ...], precision: str | None, adapter: str | None) -> None:
    """Run the agent on TASK: plan, act with tools, verify; events print as they happen."""
    from agent import Agent
    from tools import approve_all

    registry = selected_tools(workspace, tool_names, approve_all if yes else _refuse_without_yes)
    store = None if no_log else open_memory(memory_path, embedder=memory_path is not None)
    agent = Agent(make_backend(backend, model, options, precision, adapter), tools=registry, memory=store, max_steps=max_steps,
                  recall_k=3 if memory_path else 0)
    final, interrupted = None, []
    try:
        with _ctrl_c_recorded(interrupted):
            for event in agent.stream(task):
                final = event if event.type == "final" else final
                if as_json and (tokens or event.type != "token"):
                    click.echo(event.model_dump_json())
                elif not as_json and event.type != "token":
                    _print_event(event)
    except BaseException as exc:
        if not (interrupted or isinstance(exc, KeyboardInterrupt)):
            raise
        click.echo("interrupted", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        if store is not None:
            store.close()
    if final is None or final.answer is None:
        raise SystemExit(EXIT_NO_ANSWER)
    raise SystemExit(EXIT_VERIFIED if final.verified else EXIT_UNVERIFIED)
