"""Commands that answer one question and print it: `rlm query` and the offline `rlm demo`."""

from __future__ import annotations

from typing import Any

import click

from rlm.cli.common import fail, load_context, report, sigterm_as_interrupt
from rlm.cli.options import engine_options, settings_from


@click.command()
@click.argument("question")
@click.option(
    "--context",
    "-c",
    "contexts",
    multiple=True,
    metavar="FILE",
    help="Context file, folder (its text files) or quoted glob; repeat for more documents; - for stdin.",
)
@click.option(
    "--errors",
    type=click.Choice(["strict", "replace"]),
    default="strict",
    show_default=True,
    help="Invalid UTF-8 in the context: stop with an error, or replace it with U+FFFD.",
)
@engine_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report instead of the bare answer.")
@click.option(
    "--raw",
    is_flag=True,
    help="Print the answer byte for byte, escape sequences included (on a terminal they are shown escaped).",
)
@click.option("--trace", type=click.Path(dir_okay=False), help="Write the whole trajectory as JSONL.")
@click.option("--verbose", "-v", is_flag=True, help="Show each code block and its output on stderr.")
def query(
    question: str,
    contexts: tuple[str, ...],
    errors: str,
    fallbacks: tuple[str, ...],
    as_json: bool,
    raw: bool,
    trace: str | None,
    verbose: bool,
    **options: Any,
) -> None:
    """Answer QUESTION about the given context."""
    from rlm.errors import ConfigError, ContextError
    from rlm.progress import Progress

    try:
        from rlm.api import RLM

        engine = RLM(**settings_from(fallbacks, options))
        context = load_context(contexts, errors)
        with Progress(verbose=verbose) as progress, sigterm_as_interrupt():
            result = engine.query(context, question, trace=trace, on_event=progress)
    except (ConfigError, ContextError) as exc:  # includes a local-only refusal, before anything is sent
        fail(exc)
    report(result, as_json=as_json, trace=trace, raw=raw)


@click.command()
@click.option("--lines", default=20_000, show_default=True, help="Size of the generated log.")
@click.option("--tps", default=400.0, show_default=True, help="Scripted model speed, tokens per second.")
@click.option("--trace", type=click.Path(dir_okay=False), help="Write the whole trajectory as JSONL.")
@click.option("--quiet", "-q", is_flag=True, help="Do not show the code blocks and their output.")
def demo(lines: int, tps: float, trace: str | None, quiet: bool) -> None:
    """Watch the engine work end to end, offline, against a local SCRIPTED model (no LLM, no key)."""
    from rlm.progress import Progress
    from rlm.scripted import ScriptedServer
    from rlm.scripted.demo import DEMO_QUESTION, demo_rlm, install_demo, make_demo_log

    with ScriptedServer(tps=tps) as server:
        install_demo(server)
        click.echo(
            f"rlm demo: the models are SCRIPTED programs served at {server.base_url}, not LLMs; "
            "the engine, REPL, streaming and sub-calls are real.",
            err=True,
        )
        engine = demo_rlm(server, cache=False)  # the demo shows the engine at work, not a replay
        click.echo(f"rlm demo: question: {DEMO_QUESTION}", err=True)
        with Progress(verbose=not quiet) as progress:
            result = engine.query(make_demo_log(lines), DEMO_QUESTION, trace=trace, on_event=progress)
    report(result, as_json=False, trace=trace)
