"""Live progress on stderr: turn, code running, sub-calls in flight, tokens, cost.

On a terminal it is one status line redrawn in place (rich); otherwise it stays quiet apart from
retries and provider errors, so logs of scripted runs stay readable. `verbose` also shows each code
block as it starts running and what it printed, which is how `rlm demo` lets a newcomer watch.
Code, outputs and errors come from the model: on a terminal their control characters are shown escaped.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.status import Status as Spinner
from rich.text import Text

from rlm.events import Event
from rlm.prompts import clip
from rlm.terminal import neutralise

SHOWN_OUTPUT_CHARS = 1500


class Progress:
    def __init__(self, console: Console | None = None, *, verbose: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.verbose = verbose
        self.live = self.console.is_terminal
        self.turn = 0
        self.cells_running = 0
        self.in_flight = 0
        self.sub_calls = 0
        self.tokens = 0
        self.cost = 0.0
        self.nodes = 0
        self._spinner: Spinner | None = None
        self._errors_shown: set[str] = set()

    def __enter__(self) -> Progress:
        if self.live:
            self._spinner = self.console.status(self._line())
            self._spinner.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._spinner is not None:
            self._spinner.stop()

    def __call__(self, event: Event) -> None:
        kind = event["type"]
        if kind == "turn_start" and not event["path"]:
            self.turn = event["iteration"]
        elif kind == "node_start":
            self.nodes += 1
        elif kind == "cell_start":
            self.cells_running += 1
            if self.verbose:
                self._show_code(event)
        elif kind == "cell_end":
            self.cells_running -= 1
            if self.verbose:
                self._show_output(event)
        elif kind == "model_request" and event["role"] != "root":
            self.in_flight += 1
        elif kind == "model_call":
            if event["role"] != "root":
                self.in_flight = max(0, self.in_flight - 1)
                self.sub_calls += 1
            self.tokens += event["prompt_tokens"] + event["completion_tokens"]
            self.cost += event["cost_usd"]
        elif kind == "model_error":
            retry = event.get("retry_in_s")
            if event["role"] != "root" and retry is None:
                self.in_flight = max(0, self.in_flight - 1)
            if event["error"] not in self._errors_shown:  # the same failure on every retry reads once
                self._errors_shown.add(event["error"])
                then = f"retrying in {retry:.1f} s" if retry is not None else "giving up"
                self._warn(f"{event['error']} ({then})")
        elif kind == "sandbox_layers" and self.verbose and not event["path"]:
            self._warn(f"the REPL sandbox runs without these OS layers: {', '.join(event['missing'])}")
        elif kind == "call_workers" and event.get("error"):
            self._warn(f"call workers could not start ({event['error']}); the calls were made in this process")
        if self._spinner is not None:
            self._spinner.update(self._line())

    def _warn(self, text: str) -> None:
        """One yellow line. Off a terminal it is not wrapped at the console's guessed 80 columns: a log
        or a CI page shows it whole, and grep finds it on one line."""
        soft = not self.console.is_terminal
        self.console.print(f"[yellow]{escape(self._safe(text))}[/]", highlight=False, soft_wrap=soft)

    def _safe(self, text: str) -> str:
        return neutralise(text) if self.console.is_terminal else text

    def _where(self, event: Event) -> str:
        node = "root" if not event["path"] else "child " + ".".join(map(str, event["path"]))
        return f"{node} · turn {event['iteration']} · block {event['index'] + 1}"

    def _show_code(self, event: Event) -> None:
        from rich.syntax import Syntax  # only -v shows code: its import (~10 ms) stays off the default path

        code = Syntax(
            self._safe(event["code"]), "python", theme="ansi_dark", background_color="default", word_wrap=True
        )
        self.console.print(Panel(code, title=f"running: {self._where(event)}", title_align="left"))

    def _show_output(self, event: Event) -> None:
        parts = [event.get("stdout") or "", event.get("error") or "", event.get("notice") or ""]
        shown = clip("\n".join(p.rstrip("\n") for p in parts if p), SHOWN_OUTPUT_CHARS) or "(no output)"
        shown = self._safe(shown)
        style = "red" if event.get("error") else "dim"
        took = f"{event.get('duration_s', 0):.2f} s"
        self.console.print(Panel(Text(shown, style=style), title=f"output · {took}", title_align="left"))

    def _line(self) -> str:
        doing = "running code" if self.cells_running else "thinking"
        children = f" · {self.nodes - 1} child RLMs" if self.nodes > 1 else ""
        return (
            f"turn {self.turn} · {doing} · {self.in_flight} sub-calls in flight · {self.sub_calls} done"
            f"{children} · {self.tokens:,} tokens · ${self.cost:.4f}"
        )
