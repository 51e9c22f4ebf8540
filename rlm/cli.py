"""The `rlm` command. The answer, and only the answer, goes to stdout; everything else to stderr.

Exit codes: 0 answered; 1 bad input or configuration; 3 a limit ended the run (the partial answer is
still printed); 4 a provider failed; 130 interrupted. Heavy modules are imported inside commands so
`rlm --help` stays instant.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

EXIT_ERROR = 1
EXIT_LIMIT = 3
EXIT_PROVIDER = 4
EXIT_INTERRUPTED = 130


def _fail(message: str | Exception, code: int = EXIT_ERROR) -> None:
    """Exit with `message`; an error from the Python API is told in flags (its `cli_message`)."""
    from rlm.terminal import for_stream

    if isinstance(message, Exception):
        message = getattr(message, "cli_message", None) or str(message)
    click.echo(f"rlm: {for_stream(message, sys.stderr)}", err=True)
    sys.exit(code)


def _load_context(paths: tuple[str, ...], errors: str) -> Any:
    from rlm.context import Context

    if not paths:
        _fail("no context given. Pass --context FILE, a folder or a glob (repeat for more documents), or - for stdin.")
    if "-" in paths:
        if len(paths) > 1:
            _fail("--context - (stdin) cannot be combined with files.")
        return Context.from_stream(sys.stdin.buffer, errors=errors)
    if len(paths) == 1 and os.path.isfile(paths[0]):
        return Context.from_path(paths[0], errors=errors)  # one file keeps its own shape (.json documents)
    from rlm.gather import gather, skipped_notice

    found = gather(list(paths), errors)
    if found.skipped:
        click.echo(f"rlm: context: {skipped_notice(found.skipped)}", err=True)
    return Context.from_paths(found.files, errors=errors, names=found.names)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlm-stream", prog_name="rlm")
def main() -> None:
    """Recursive Language Models: answer questions about contexts far larger than a model's window."""
    # this process ends once the command has: frozen, its heap is not walked again by the collections
    # of the interpreter's exit (~0.1 s after a run); a Python caller of rlm never gets here
    click.get_current_context().call_on_close(gc.freeze)


class _SettingOption(click.Option):
    """An engine option: unset, it stays None and `Settings` gives the default, which its help names.
    The help is filled in when shown, so that starting `rlm` does not import the settings."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None:
            return None
        from types import SimpleNamespace

        from rlm.budget import DEFAULT_COMPLETION_CAP
        from rlm.config import DEFAULTS
        from sandbox.limits import CellLimits

        cache = "on" if DEFAULTS.cache.enabled else "off"
        defaults = {
            "d": SimpleNamespace(**DEFAULTS.named()),
            "cell": CellLimits(),
            "completion_cap": DEFAULT_COMPLETION_CAP,
            "cache": cache,
        }
        return record[0], record[1].format(**defaults)


def _setting_option(*names: str, **attrs: Any) -> Callable[..., Any]:
    return click.option(*names, cls=_SettingOption, **attrs)


def _engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that runs the engine takes (they become `rlm.config.Settings`)."""
    options = [
        _setting_option("--model", "-m", help="Root model, a litellm name (env RLM_MODEL)."),
        _setting_option("--sub-model", "-s", help="Model for llm_query sub-calls (env RLM_SUB_MODEL)."),
        _setting_option("--aggregate-model", help="Model for llm_query(..., role='aggregate') (default: the root)."),
        _setting_option("--api-base", help="Base URL of an OpenAI-compatible or self-hosted server."),
        _setting_option("--api-key", help="API key (prefer the provider's environment variable)."),
        _setting_option(
            "--temperature",
            type=float,
            help="Sampling temperature of every call (default: the provider's); above 0, cached only "
            "with cache_sampled.",
        ),
        _setting_option(
            "--fallback",
            "fallbacks",
            multiple=True,
            metavar="MODEL=FALLBACK[,FALLBACK]",
            help="When MODEL fails past its retries, FALLBACK takes the call (repeatable).",
        ),
        _setting_option("--max-iterations", type=int, help="Turns per RLM node (default {d.max_iterations})."),
        _setting_option("--max-depth", type=int, help="RLM levels including the root (default {d.max_depth})."),
        _setting_option("--timeout", type=float, help="Wall-clock limit of a run (the whole tree), in seconds."),
        _setting_option("--max-cost", type=float, help="Cost limit of a run (the whole tree), in USD."),
        _setting_option("--max-tokens", type=int, help="Token limit of a run (the whole tree)."),
        _setting_option(
            "--max-calls",
            type=int,
            help="Model-call limit of a run (the whole tree; default {d.max_calls}, 0: no limit).",
        ),
        _setting_option(
            "--max-completion-tokens",
            type=int,
            help="Longest reply of one call, sent as its max_tokens (default with --max-cost/--max-tokens: "
            "{completion_cap}); "
            "each call is sent only when its prompt and a reply this long fit in the limits.",
        ),
        _setting_option(
            "--cell-timeout", type=float, help="Seconds of computation per REPL cell (default {cell.timeout_s:g})."
        ),
        _setting_option("--cell-cpu", type=float, help="CPU seconds per REPL cell (default: half of --cell-timeout)."),
        _setting_option(
            "--sandbox-memory",
            "sandbox_memory_mb",
            type=int,
            metavar="MB",
            help="Memory a REPL cell may use (default {cell.memory_mb} MB plus 4x the context's size).",
        ),
        _setting_option(
            "--max-output-chars",
            type=int,
            help="REPL output shown to the model per block (default {d.max_output_chars}).",
        ),
        _setting_option("--max-in-flight", type=int, help="Concurrent calls per model (default {d.max_in_flight})."),
        _setting_option("--rpm", type=int, help="Requests per minute per model."),
        _setting_option("--tpm", type=int, help="Prompt tokens per minute per model."),
        _setting_option(
            "--call-workers",
            type=int,
            help="Processes that make the model calls, for wide fan-outs on spare cores "
            "(default {d.call_workers}: this one).",
        ),
        _setting_option(
            "--transport",
            type=click.Choice(["auto", "litellm"]),
            help="auto: OpenAI-compatible models through rlm's own client, others through litellm; "
            "litellm: every call through litellm (default {d.transport}).",
        ),
        _setting_option(
            "--first-byte-timeout",
            type=float,
            help="Seconds a call waits for its reply to start before it is retried (default {d.first_byte_timeout:g}).",
        ),
        _setting_option(
            "--idle-timeout",
            type=float,
            help="Seconds a call waits between two pieces of a reply before it is retried "
            "(default {d.idle_timeout:g}).",
        ),
        _setting_option(
            "--after-block",
            type=click.Choice(["stop", "continue", "wait"]),
            help="At a closed block: end the reply and run it (stop), run it while the reply "
            "streams on (continue), or run blocks after the reply (wait); default {d.after_block}.",
        ),
        _setting_option(
            "--sandbox", type=click.Choice(["process", "inprocess"]), help="REPL isolation (default {d.sandbox})."
        ),
        _setting_option(
            "--cache/--no-cache", default=None, help="Serve repeated calls from the response cache (default {cache})."
        ),
        _setting_option(
            "--local-only", is_flag=True, default=None, help="Refuse every call to an endpoint not on this machine."
        ),
        _setting_option(
            "--allowed-models",
            metavar="MODEL[,MODEL]",
            help="Models REPL code may ask for by name besides the configured ones (served through --api-base).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _settings(fallbacks: tuple[str, ...], options: dict[str, Any]) -> dict[str, Any]:
    """Engine options as `RLM(...)` keyword arguments (unset flags stay unset). Every command that
    runs the engine passes here: the process is rlm's own, so litellm's import may freeze its heap."""
    from rlm.config import parse_fallbacks
    from rlm.models.pricing import own_process

    own_process()

    if fallbacks:
        options["fallbacks"] = parse_fallbacks(";".join(fallbacks), "--fallback")
    return {name: value for name, value in options.items() if value is not None}


@main.command()
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
@_engine_options
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

        engine = RLM(**_settings(fallbacks, options))
        context = _load_context(contexts, errors)
        with Progress(verbose=verbose) as progress, _sigterm_as_interrupt():
            result = engine.query(context, question, trace=trace, on_event=progress)
    except (ConfigError, ContextError) as exc:  # includes a local-only refusal, before anything is sent
        _fail(exc)
    _report(result, as_json=as_json, trace=trace, raw=raw)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill PID` ends a run like Ctrl-C does: partial answer printed, trace closed, exit 130."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report(result: Any, *, as_json: bool, trace: str | None, raw: bool = False) -> None:
    from rlm.terminal import for_stream, json_safe
    from rlm.types import Status

    if as_json:
        click.echo(json_safe(json.dumps(result.to_dict(), indent=2, ensure_ascii=False)))
    elif result.answer is not None and raw:
        sys.stdout.write(result.answer + "\n")  # not click.echo, which strips colour codes off a pipe
        sys.stdout.flush()
    elif result.answer is not None:
        click.echo(for_stream(result.answer, sys.stdout))
    from rlm.display import summary_line

    click.echo(f"rlm: {summary_line(result)}", err=True)
    if result.status is Status.COMPLETED:
        return
    kept = f" The trajectory is in {trace}." if trace else " Re-run with --trace FILE to keep the trajectory."
    partial = "The partial answer above is the best so far." if result.answer else "No answer was reached."
    click.echo(f"rlm: stopped: {for_stream(str(result.error), sys.stderr)}. {partial}{kept}", err=True)
    codes = {
        Status.INTERRUPTED: EXIT_INTERRUPTED,
        Status.PROVIDER_ERROR: EXIT_PROVIDER,
        Status.ERROR: EXIT_ERROR,
    }
    sys.exit(codes.get(result.status, EXIT_LIMIT))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on (0: any free one).")
@click.option(
    "--serve-key",
    envvar="RLM_SERVE_KEY",
    help="Bearer key clients must send (env RLM_SERVE_KEY); required unless listening on loopback only.",
)
@click.option(
    "--context-root",
    "context_roots",
    multiple=True,
    type=click.Path(file_okay=False, exists=True),
    help="Folder whose files requests may name as context (repeatable); nothing else on disk is reachable.",
)
@click.option("--max-body-mb", default=32.0, show_default=True, type=float, help="Largest request or upload.")
@click.option("--max-concurrent", default=8, show_default=True, type=int, help="Runs at once; more get 503.")
@click.option("--max-uploads-mb", default=512.0, show_default=True, type=float, help="Uploaded files held, in all.")
@click.option("--upload-ttl", default=3600.0, show_default=True, type=float, help="Seconds an uploaded file is kept.")
@_engine_options
def serve(
    host: str,
    port: int,
    serve_key: str | None,
    context_roots: tuple[str, ...],
    max_body_mb: float,
    max_concurrent: int,
    max_uploads_mb: float,
    upload_ttl: float,
    fallbacks: tuple[str, ...],
    **options: Any,
) -> None:
    """Serve the RLM as an OpenAI-compatible model (POST /v1/chat/completions, /v1/files, /v1/models).

    Engine limits (--max-cost, --timeout, ...) are caps: a request's own "rlm" limits may only lower them.
    Without --timeout a run stops after 600 s."""
    from pathlib import Path

    from rlm.errors import ConfigError
    from rlm.loop import run as run_loop
    from rlm.serve import RLMService, ServeOptions, build_engine, check_exposure, serve_forever

    serve_options = ServeOptions(
        api_key=serve_key or None,
        context_roots=[Path(root) for root in context_roots],
        max_body_bytes=int(max_body_mb * 2**20),
        max_concurrent=max_concurrent,
        max_upload_bytes=int(max_uploads_mb * 2**20),
        upload_ttl_s=upload_ttl,
    )
    try:
        check_exposure(host, serve_options)
        service = RLMService(build_engine(_settings(fallbacks, options)), serve_options)
        run_loop(serve_forever(service, host, port, lambda line: click.echo(line, err=True)))
    except ConfigError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc}")
    except KeyboardInterrupt:
        click.echo("rlm serve: stopped", err=True)


@main.command()
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
    _report(result, as_json=False, trace=trace)


@main.command()
@click.argument("suite")
@click.option(
    "--method",
    type=click.Choice(["rlm", "direct"]),
    default="rlm",
    show_default=True,
    help="rlm, or the whole context in one call (cut to the window), as the paper's baseline.",
)
@click.option("--n", type=int, help="Number of tasks (default: the suite's).")
@click.option("--length", help="Context length in tokens, e.g. 32K or 131072.")
@click.option("--concurrency", type=int, default=4, show_default=True, help="Tasks run in parallel.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Results folder (resumable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run the tasks on Ray: alone, an embedded local Ray; 'auto' or ray://host:10001 joins a cluster.",
)
@click.option("--sweep-max-calls", type=int, help="Model calls for the whole sweep (tasks it cuts run on a re-run).")
@click.option(
    "--sweep-max-cost",
    type=float,
    metavar="USD",
    help="Cost limit of the whole sweep: each task runs with part of what is left as its --max-cost "
    "(an even share per task running at once, unless --max-cost is set).",
)
@_engine_options
def bench(suite: str, fallbacks: tuple[str, ...], **options: Any) -> None:
    """Run a benchmark SUITE (oolong, oolong-spam, oolong-pairs, sniah[-noise|-uuid|-80k], or a JSONL file).

    Engine options apply to each task's run (--timeout and --max-cost are per task); --rpm, --tpm and
    --max-in-flight hold across the whole sweep."""
    from rlm.bench import run_bench
    from rlm.config import resolve_settings
    from rlm.errors import ConfigError, ContextError, ProviderError

    sweep_keys = ("method", "n", "length", "concurrency", "out_dir", "seed", "ray_address")
    sweep = {k: options.pop(k) for k in (*sweep_keys, "sweep_max_calls", "sweep_max_cost")}
    try:
        engine = _settings(fallbacks, options)
        settings = resolve_settings(model=engine.pop("model", None), sub_model=engine.pop("sub_model", None))
        if not settings.models.model:
            _fail("no model configured: pass --model (and --sub-model) or set RLM_MODEL; see `rlm bench --help`.")
        run_bench(suite, model=settings.models.require_model(), sub_model=settings.models.sub_model, **sweep, **engine)
    except (ConfigError, ContextError, FileNotFoundError) as exc:
        _fail(exc)
    except ProviderError as exc:
        _fail(exc, EXIT_PROVIDER)
    except KeyboardInterrupt:
        _fail("interrupted; finished tasks are kept, re-run the same command to resume.", EXIT_INTERRUPTED)


@main.command()
@click.argument("jobs", type=click.Path(dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Results JSONL (resumable).")
@click.option(
    "--concurrency", type=int, default=4, show_default=True, help="Jobs run in parallel (an embedded Ray's CPUs)."
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run on Ray: alone, an embedded local Ray; 'auto' or ray://host:10001 joins a cluster.",
)
@click.option("--batch-max-calls", type=int, help="Model calls for the whole batch (a re-run may spend as many again).")
@click.option(
    "--batch-max-cost",
    type=float,
    metavar="USD",
    help="Cost limit of the whole batch: each job runs with part of what is left as its --max-cost "
    "(an even share per job running at once, unless --max-cost is set). A re-run may spend as much again.",
)
@_engine_options
def batch(
    jobs: str,
    out_path: str,
    concurrency: int,
    ray_address: str | None,
    batch_max_calls: int | None,
    batch_max_cost: float | None,
    **options: Any,
) -> None:
    """Answer every job of JOBS, a JSONL file of {"question", "context" (text) or "context_path" (file),
    optional "id"}. Rows are appended to --out as jobs end; a re-run does only the missing ones.

    Engine options apply to each job's run; --rpm and --max-in-flight hold across the whole batch."""
    from rlm.batch import run_batch
    from rlm.errors import ConfigError, ContextError

    fallbacks = options.pop("fallbacks")
    try:
        settings = _settings(fallbacks, options)
        run_batch(
            jobs,
            out_path,
            settings,
            concurrency=concurrency,
            ray_address=ray_address,
            max_calls=batch_max_calls,
            max_cost=batch_max_cost,
        )
    except (ConfigError, ContextError) as exc:
        _fail(exc)
    except KeyboardInterrupt:
        _fail("interrupted; finished jobs are kept, re-run the same command to resume.", EXIT_INTERRUPTED)


@main.group()
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
        _fail(exc)
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


@main.command()
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


if __name__ == "__main__":
    main()
