"""`tokentrail memory ...` and `tokentrail logs`: the SQLite memory and the run traces."""

from __future__ import annotations

import json

import click

from cli.common import db_option, open_memory


@click.group()
def memory() -> None:
    """Index documents into memory and search them."""


@memory.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@db_option
@click.option("--no-embeddings", is_flag=True, help="BM25 only: skip the embedding model.")
def memory_add(paths: tuple[str, ...], db: str | None, no_embeddings: bool) -> None:
    """Index files and folders (text, Markdown, code)."""
    with open_memory(db, embedder=not no_embeddings) as store:
        for path in paths:
            report = store.add_path(path, progress=True)
            click.echo(f"{path}: {len(report.added)} added, {len(report.replaced)} replaced, "
                       f"{len(report.unchanged)} unchanged, {len(report.skipped)} skipped")
            for skipped, why in report.skipped:
                click.echo(f"  skipped {skipped}: {why}", err=True)


@memory.command("search")
@click.argument("query")
@db_option
@click.option("--mode", type=click.Choice(["bm25", "vector", "hybrid"]), default="hybrid", show_default=True)
@click.option("-k", type=int, default=5, show_default=True)
@click.option("--source", default=None, help="Only documents whose source matches this glob.")
def memory_search(query: str, db: str | None, mode: str, k: int, source: str | None) -> None:
    """Search memory."""
    with open_memory(db, embedder=mode != "bm25") as store:
        for hit in store.search(query, k=k, mode=mode, source=source):
            snippet = " ".join(hit.text.split())[:160]
            click.echo(f"[{hit.chunk_id}] {hit.score:.4f}  {hit.source}\n    {snippet}")


@memory.command("stats")
@db_option
def memory_stats(db: str | None) -> None:
    """Counts of documents, chunks, embeddings, notes and runs."""
    with open_memory(db, embedder=False) as store:
        for key, value in store.stats().items():
            click.echo(f"{key:10} {value}")


@click.command()
@db_option
@click.option("-n", "--count", type=int, default=5, show_default=True, help="How many recent runs.")
@click.option("--run", "run_id", default=None, help="Show every event of one run.")
def logs(db: str | None, count: int, run_id: str | None) -> None:
    """Recent agent runs and their events, from the memory database."""
    with open_memory(db, embedder=False) as store:
        if run_id:
            for event in store.traces.events(run_id):
                payload = {k: v for k, v in event["payload"].items() if k != "type"}
                click.echo(f"{event['seq']:4} {event['type']:12} {json.dumps(payload, ensure_ascii=False)[:200]}")
            return
        for run in store.traces.runs(count):
            verified = {1: "verified", 0: "not verified"}.get(run["verified"], "")
            click.echo(f"{run['id']}  {run['started_at']}  {run['status']:9} {verified:12} {run['events']:4} events  "
                       f"{run['task'][:60]}")
            if run["answer"]:
                click.echo(f"    answer: {' '.join(run['answer'].split())[:150]}")
