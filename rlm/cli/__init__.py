"""The `rlm` command. The answer, and only the answer, goes to stdout; everything else to stderr.

Exit codes: 0 answered; 1 bad input or configuration; 3 a limit ended the run (the partial answer is
still printed); 4 a provider failed; 130 interrupted. Heavy modules are imported inside commands so
`rlm --help` stays instant. One module per family of commands; `common` and `options` are what they share.
"""

from __future__ import annotations

import gc

import click

from rlm.cli.answer import demo, query
from rlm.cli.server import serve
from rlm.cli.stored import cache, view
from rlm.cli.sweeps import batch, bench


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlm-stream", prog_name="rlm")
def main() -> None:
    """Recursive Language Models: answer questions about contexts far larger than a model's window."""
    # this process ends once the command has: frozen, its heap is not walked again by the collections
    # of the interpreter's exit (~0.1 s after a run); a Python caller of rlm never gets here
    click.get_current_context().call_on_close(gc.freeze)


for command in (query, serve, demo, bench, batch, cache, view):
    main.add_command(command)
