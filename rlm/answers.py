"""What a node reads out of its cells and replies: the output the model sees of a cell, the answer a
cell submitted, and the answer in a reply that was asked for prose.

Kept apart from the turn loop (rlm/node.py) because these are plain functions of a `CellOutcome` or a
reply's text: what counts as an answer is decided here, when the loop acts on it is decided there.
"""

from __future__ import annotations

import re

from rlm.fences import FinalMarker, ReplyParser
from rlm.types import CellOutcome

FENCED = re.compile(r"```.*?(```|$)", re.DOTALL)


def render(outcome: CellOutcome) -> str:
    """What the model sees of a cell: its output, then its error and any notice."""
    parts = [outcome.stdout.rstrip("\n")] if outcome.stdout else []
    if outcome.error:
        parts.append(outcome.error.rstrip("\n"))
    if outcome.notice:
        parts.append(f"[{outcome.notice}]")
    return "\n".join(parts)


def cell_answer(outcome: CellOutcome) -> str | None:
    """The answer a cell submitted: its FINAL(...), or `answer["content"]` once `answer["ready"]` is set."""
    if outcome.final is not None:
        return outcome.final
    if outcome.answer.get("ready"):
        content = outcome.answer.get("content")
        return str(content if content is not None else "")
    return None


def prose_answer(reply: str) -> str | None:
    """The answer in a reply that was asked for prose: its FINAL(...) if it wrote one, else the text
    with any code blocks removed (code is never an answer)."""
    parser = ReplyParser()
    events = [*parser.feed(reply), *parser.finish()]
    finals = [e.value for e in events if isinstance(e, FinalMarker) and e.kind == "FINAL"]
    if finals:
        return unquote(finals[-1]) or None
    text = FENCED.sub("", reply).strip()
    return unquote(text) or None


def unquote(value: str) -> str:
    """FINAL("x") and FINAL(x) give the same answer."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
