"""What every command shares: exit codes, failing with a message, loading a context, reporting a result."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import click

EXIT_ERROR = 1
EXIT_LIMIT = 3
EXIT_PROVIDER = 4
EXIT_INTERRUPTED = 130


def fail(message: str | Exception, code: int = EXIT_ERROR) -> NoReturn:
    """Exit with `message`; an error from the Python API is told in flags (its `cli_message`)."""
    from rlm.terminal import for_stream

    if isinstance(message, Exception):
        message = getattr(message, "cli_message", None) or str(message)
    click.echo(f"rlm: {for_stream(message, sys.stderr)}", err=True)
    sys.exit(code)


def load_context(paths: tuple[str, ...], errors: str) -> Any:
    from rlm.context import Context

    if not paths:
        fail("no context given. Pass --context FILE, a folder or a glob (repeat for more documents), or - for stdin.")
    if "-" in paths:
        if len(paths) > 1:
            fail("--context - (stdin) cannot be combined with files.")
        return Context.from_stream(sys.stdin.buffer, errors=errors)
    if len(paths) == 1 and os.path.isfile(paths[0]):
        return Context.from_path(paths[0], errors=errors)  # one file keeps its own shape (.json documents)
    from rlm.gather import gather, skipped_notice

    found = gather(list(paths), errors)
    if found.skipped:
        click.echo(f"rlm: context: {skipped_notice(found.skipped)}", err=True)
    return Context.from_paths(found.files, errors=errors, names=found.names)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """`kill PID` ends a run like Ctrl-C does: partial answer printed, trace closed, exit 130."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def report(result: Any, *, as_json: bool, trace: str | None, raw: bool = False) -> None:
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
