"""`tokentrail train ...`: fine-tune the local model with LoRA and watch it learn."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import make_backend

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 60) -> str:
    """The loss curve in one line of block characters (downsampled to `width`)."""
    if not values:
        return ""
    step = max(1, len(values) / width)
    points = [values[int(i * step)] for i in range(min(width, len(values)))]
    low, high = min(points), max(points)
    return "".join(BLOCKS[int((v - low) / (high - low) * (len(BLOCKS) - 1)) if high > low else 0] for v in points)


@click.group()
def train() -> None:
    """Fine-tune the local model with LoRA adapters."""


def _run(kind: str, data: Path | tuple[Path, ...], out: Path, model: str | None, adapter: str | None, config) -> None:
    """Trains with a progress bar (loss, tokens/s, the loss curve so far) and prints the curve at the end."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from train.dpo import dpo
    from train.sft import sft
    from train.text import train_text

    backend = make_backend("local", model, (), "exact", adapter)
    losses: list[float] = []
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                   TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task(kind, total=None, status="")

    def on_step(step, total: int) -> None:
        losses.append(step.loss)
        extra = "".join(f", {name} {value:.3f}" for name, value in step.metrics.items())
        bar.update(task, total=total, completed=step.step,
                   status=f"loss {step.loss:.3f}{extra}, {step.tokens_per_s:.0f} tok/s  {sparkline(losses, 30)}")

    with bar:
        try:
            result = {"sft": sft, "dpo": dpo, "text": train_text}[kind](backend, data, out, config, on_step)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    for problem in result.skipped:
        click.echo(f"skipped {problem}", err=True)
    last = result.steps[-1]
    held = f"; held-out loss {last.held_out_loss:.4f}" if last.held_out_loss is not None else ""
    extra = "".join(f"; {name} {value:.3f}" for name, value in last.metrics.items())
    click.echo(f"loss {result.steps[0].loss:.4f} -> {last.loss:.4f}{held}{extra}\n{sparkline(losses)}")
    if kind == "text":
        click.echo(f"held-out perplexity {result.held_out_perplexity_before:.3f} -> {result.held_out_perplexity_after:.3f} "
                   f"({result.files} files, {result.tokens} tokens)")
    unit = "blocks" if kind == "text" else "examples"
    click.echo(f"{result.trained_examples} {unit} ({result.held_out_examples} held out), {len(result.steps)} steps "
               f"in {result.seconds:.0f} s; adapter in {out} (use it with --adapter {out})")


def _common(command):
    """DATA (a JSONL file) and the options every kind of training takes."""
    return click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))(_options(command))


def _options(command):
    for option in reversed([
        click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
                     help="The adapter folder to write."),
        click.option("-m", "--model", default=None, help="The base model (default: the default model)."),
        click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True),
        click.option("--rank", type=click.IntRange(1, 256), default=8, show_default=True),
        click.option("--accumulate", type=click.IntRange(min=1), default=4, show_default=True,
                     help="Examples per optimizer step."),
    ]):
        command = option(command)
    return command


@train.command("sft")
@_common
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-4, show_default=True)
def train_sft(data: Path, out: Path, model: str | None, epochs: int, rank: int, accumulate: int, lr: float) -> None:
    """Supervised fine-tuning on chat examples (JSONL lines of {"messages": [...]}); loss on the replies only."""
    from train.sft import SFTConfig

    _run("sft", data, out, model, None, SFTConfig(epochs=epochs, lr=lr, rank=rank, accumulate=accumulate))


@train.command("dpo")
@_common
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=5e-5, show_default=True)
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True)
@click.option("--adapter", default=None, type=click.Path(exists=True, file_okay=False),
              help="An SFT adapter to start from (and to be the reference); the result holds both.")
def train_dpo(data: Path, out: Path, model: str | None, epochs: int, rank: int, accumulate: int, lr: float, beta: float,
              adapter: str | None) -> None:
    """Preference optimization on pairs (JSONL lines of {"prompt": ..., "chosen": ..., "rejected": ...})."""
    from train.dpo import DPOConfig

    _run("dpo", data, out, model, adapter, DPOConfig(epochs=epochs, lr=lr, rank=rank, accumulate=accumulate, beta=beta))


@train.command("text")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_options
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-4, show_default=True)
@click.option("--block", type=click.IntRange(min=16), default=512, show_default=True, help="Tokens per training block.")
def train_text_command(sources: tuple[Path, ...], out: Path, model: str | None, epochs: int, rank: int, accumulate: int,
                       lr: float, block: int) -> None:
    """Domain tuning on plain text files or folders of them: next-token loss on packed blocks, held-out perplexity
    before and after."""
    from train.text import TextConfig

    _run("text", sources, out, model, None, TextConfig(epochs=epochs, lr=lr, rank=rank, accumulate=accumulate, block=block))


@train.command("data")
@click.option("--memory", "--db", "db", default=None, help="The memory whose run traces to read (default: the default one).")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
def train_data(db: str | None, out: Path) -> None:
    """Turn the memory's agent runs into sft.jsonl (turns of verified runs) and dpo.jsonl (verified against failed)."""
    from cli.common import open_memory
    from train.traces import runs_from_memory, write_datasets

    with open_memory(db, embedder=False, must_exist=True) as store:
        runs = runs_from_memory(store)
    sft_path, dpo_path, examples, pairs = write_datasets(runs, out)
    click.echo(f"{len(runs)} runs ({sum(r.right for r in runs)} verified): {examples} examples in {sft_path}, "
               f"{pairs} pairs in {dpo_path}")


@train.command("collect")
@click.argument("tasks", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("-m", "--model", default=None, help="The model to run (default: the default model).")
@click.option("--adapter", default=None, type=click.Path(exists=True, file_okay=False), help="Run with this adapter.")
@click.option("--runs", "runs_per_task", type=click.IntRange(min=1), default=3, show_default=True,
              help="Attempts per task (the first greedy).")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.8, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N tasks.")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Tasks run at once, their model calls decoded together.")
def train_collect(tasks: Path, out: Path, model: str | None, adapter: str | None, runs_per_task: int,
                  temperature: float, limit: int | None, parallel: int) -> None:
    """Run the agent on tasks with checkable answers (JSONL; see train/agent_tasks.jsonl) and keep what it got right."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from train.tasks import attempt, read_tasks, summary
    from train.traces import write_datasets

    todo, problems = read_tasks(tasks)
    for problem in problems:
        click.echo(f"skipped {problem}", err=True)
    todo = todo[:limit] if limit else todo
    backend = make_backend("local", model, (f"parallel={parallel}",) if parallel > 1 else (), None, adapter)
    collected, examples, pairs = [], 0, 0
    sft_path, dpo_path, _, _ = write_datasets([], out)  # each task's runs are appended as they finish: an interrupted
    # collection keeps what it has
    with Progress(TextColumn("collecting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                  console=Console(stderr=True), transient=True) as bar:
        progress = bar.add_task("collect", total=len(todo), status="")
        pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="tokentrail-collect")
        try:
            pending = [pool.submit(attempt, backend, task, runs_per_task, temperature) for task in todo]
            for done in as_completed(pending):  # written as each task finishes, in the main thread
                runs = done.result()
                sft_path, dpo_path, new_examples, new_pairs = write_datasets(runs, out, append=True)
                collected, examples, pairs = collected + runs, examples + new_examples, pairs + new_pairs
                counts = summary(collected)
                bar.update(progress, advance=1, status=f"{counts['right']}/{counts['runs']} runs right")
        finally:  # Ctrl+C: the tasks not started are dropped, what was written stays
            pool.shutdown(wait=False, cancel_futures=True)
    counts = summary(collected)
    click.echo(f"{counts['runs']} runs, {counts['right']} right ({counts['tasks_right']} of {counts['tasks']} tasks): "
               f"{examples} examples in {sft_path}, {pairs} pairs in {dpo_path}")
