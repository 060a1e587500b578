"""`tokentrail memory ...` and `tokentrail logs`: the SQLite memory and the run traces."""

from __future__ import annotations

import json

import click

from cli.common import db_option, open_memory
from memory import MemoryStoreError
from memory.search import query_terms


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
@click.option("--explain", is_flag=True, help="Show why each hit was found: BM25 score and rank, cosine and rank.")
def memory_search(query: str, db: str | None, mode: str, k: int, source: str | None, explain: bool) -> None:
    """Search memory."""
    with open_memory(db, embedder=mode != "bm25", must_exist=True) as store:
        try:
            hits = store.search(query, k=k, mode=mode, source=source)
        except MemoryStoreError as exc:
            raise click.ClickException(str(exc)) from exc
        for hit in hits:
            snippet = " ".join(hit.text.split())[:160]
            click.echo(f"[{hit.chunk_id}] {hit.score:.4f}  {hit.source}\n    {snippet}")
            if explain:
                click.echo(f"    why: {hit.why.describe()}")
        if not hits:
            chunks = store.stats().get("chunks", 0)
            why = "" if query_terms(query) or mode != "bm25" else "; the query has only common words, which BM25 ignores"
            click.echo(f"no matches for {query!r} ({mode}, {chunks} chunks in {store.path}{why})", err=True)


@memory.command("reembed")
@db_option
def memory_reembed(db: str | None) -> None:
    """Embed every chunk that has no vector from the embedder (after changing it, or an upgrade)."""
    with open_memory(db, must_exist=True) as store:
        click.echo(f"embedded {store.reembed()} chunks with {store.embedder.name}")


@memory.command("stats")
@db_option
def memory_stats(db: str | None) -> None:
    """Counts of documents, chunks, embeddings, notes and runs."""
    with open_memory(db, embedder=False, must_exist=True) as store:
        for key, value in store.stats().items():
            click.echo(f"{key:10} {value}")


@click.command()
@db_option
@click.option("-n", "--count", type=int, default=5, show_default=True, help="How many recent runs.")
@click.option("--run", "run_id", default=None, help="Show every event of one run.")
def logs(db: str | None, count: int, run_id: str | None) -> None:
    """Recent agent runs and their events, from the memory database."""
    with open_memory(db, embedder=False, must_exist=True) as store:
        if run_id:
            events = store.traces.events(run_id)
            if not events:
                raise click.ClickException(f"no run {run_id!r} in {store.path}; `tokentrail logs` lists the recent ones")
            for event in events:
                payload = {k: v for k, v in event["payload"].items() if k != "type"}
                click.echo(f"{event['seq']:4} {event['type']:12} {json.dumps(payload, ensure_ascii=False)[:200]}")
            return
        runs = store.traces.runs(count)
        if not runs:
            click.echo(f"no runs recorded in {store.path}", err=True)
        for run in runs:  # status: verified, done (answered, not verified), failed, interrupted, running
            status = run["status"] + (", verified" if run["verified"] and run["status"] != "verified" else "")
            status += f", marked {run['feedback']}" if run.get("feedback") else ""
            click.echo(f"{run['id']}  {run['started_at']}  {status:11} {run['events']:4} events  {run['task'][:60]}")
            if run["answer"]:
                click.echo(f"    answer: {' '.join(run['answer'].split())[:150]}")
