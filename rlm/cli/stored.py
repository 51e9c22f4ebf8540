"""Commands that look at what runs left on disk: `rlm view` (traces, bench folders) and `rlm cache`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import click

from rlm.cli.common import fail


@click.command()
@click.argument("trace_file", metavar="TRACE")
@click.option("--follow", "-f", is_flag=True, help="Show a run still being written as its events come, then its tree.")
@click.option("--max-lines", type=click.IntRange(min=1), default=8, show_default=True, help="Lines shown of each text.")
@click.option("--full", is_flag=True, help="Every text whole, and every call with its prompt and response.")
@click.option(
    "--html",
    "html_out",
    type=click.Path(),
    help="Write a self-contained HTML page (tree, timeline, cost tables) instead; for a bench folder, "
    "an index page (OUT.html, or OUT/index.html) linking to a page per task.",
)
@click.option("--task", help="Of an `rlm bench` output folder: the task to show (its id).")
def view(trace_file: str, follow: bool, max_lines: int, full: bool, html_out: str | None, task: str | None) -> None:
    """Show a run's trace (the JSONL of `rlm query --trace`) as a tree: header with status and
    totals, each node's turns, cells (code, output) and model calls (model, tokens, cost, latency,
    cache hits), child runs, and the answer. TRACE may also be an `rlm bench` output folder: its
    tasks are listed, and --task ID shows one."""
    from pathlib import Path

    from rlm.view.console import Style, follow_trace, show
    from rlm.view.html import CALL_CHARS, render_html
    from rlm.view.trace import MAX_CHARS, TraceError, load_trace

    style = Style(max_lines, full)
    call_chars, max_chars = (None, None) if full else (CALL_CHARS, MAX_CHARS)
    path = Path(trace_file)
    try:
        if follow and (html_out or path.is_dir()):
            raise TraceError("--follow shows a trace file in the terminal; it does not go with --html or a folder")
        if path.is_dir():
            from rlm.view import bench

            tasks = bench.load_tasks(path)
            if task is not None:
                path = bench.trajectory_of(tasks, task)
            elif html_out:
                index, pages, written = bench.write_pages(path, Path(html_out), call_chars, max_chars)
                click.echo(f"wrote {index} ({len(tasks):,} tasks) and {written:,} task pages in {pages}")
                return
            else:
                bench.show_tasks(path, tasks)
                return
        elif task is not None:
            raise TraceError(f"--task picks a task of an `rlm bench` output folder; {trace_file} is not a folder")
        if follow:
            follow_trace(path, style)
        elif html_out:
            out = Path(html_out)
            if out.is_dir():
                out = out / (path.stem + ".html")
            out.write_text(render_html(load_trace(path, max_chars), path.name, call_chars), "utf-8")
            click.echo(f"wrote {out} ({out.stat().st_size / 1024:,.0f} KB)")
        else:
            show(load_trace(path, max_chars), style, str(path))
    except TraceError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:  # writing the page(s): reading errors are TraceErrors
        raise click.ClickException(f"cannot write {error.filename or html_out}: {error.strerror or error}") from None


@click.group()
def cache() -> None:
    """The response cache (default ~/.cache/rlm, or --cache-dir / RLM_CACHE_DIR)."""


def _open_cache(cache_dir: str | None) -> Any:
    """The cache at --cache-dir (or the configured one); None, after saying so, when there is none
    there (a command that only looks must not create the directory)."""
    from rlm.config import resolve_settings
    from rlm.errors import ConfigError
    from rlm.models.build import open_cache
    from rlm.models.cache import ResponseCache

    try:
        settings = resolve_settings(cache_dir=cache_dir, cache=True).cache
    except ConfigError as exc:
        fail(exc)
    if not ResponseCache.exists(settings.dir):
        click.echo(f"no cache at {ResponseCache.location(settings.dir)}")
        return None
    return open_cache(settings)


@contextlib.contextmanager
def _existing_cache(cache_dir: str | None) -> Iterator[Any]:
    """The cache to look at, closed afterwards; None (after saying so) when there is none."""
    store = _open_cache(cache_dir)
    try:
        yield store
    finally:
        if store is not None:
            store.close()


_CACHE_DIR = click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache directory (env RLM_CACHE_DIR).")


@cache.command("stats")
@_CACHE_DIR
def cache_stats(cache_dir: str | None) -> None:
    """Entries, size, hits, misses and the cost saved so far."""
    with _existing_cache(cache_dir) as store:
        if store is not None:
            click.echo(store.stats().describe())


cache.add_command(cache_stats, "info")


@cache.command("clear")
@_CACHE_DIR
def cache_clear(cache_dir: str | None) -> None:
    """Remove every cached reply and reset the counters."""
    with _existing_cache(cache_dir) as store:
        if store is not None:
            click.echo(f"removed {store.clear():,} cached replies from {store.directory}")
