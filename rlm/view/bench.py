"""An `rlm bench` output folder read back for `rlm view`: its tasks (results/<id>.json, with score,
status and cost) and their trajectories (trajectories/<id>.jsonl), listed in the terminal or written
as an HTML index page linking to one page per task."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table
from rich.text import Text as RichText

from rlm.terminal import neutralise
from rlm.view.console import money, seconds
from rlm.view.html import CALL_CHARS, render_html
from rlm.view.page import esc, page_html
from rlm.view.trace import MAX_CHARS, TraceError, load_trace

ANSWER_CHARS = 200  # of each answer and gold shown in the index


@dataclass
class Task:
    """One task of the folder: its file name, its result (None when missing or unreadable) and trajectory."""

    name: str
    result: dict[str, Any] | None
    trajectory: Path | None

    @property
    def id(self) -> str:
        return str(self.result.get("id", self.name)) if self.result else self.name

    def get(self, key: str, default: Any = None) -> Any:
        return self.result.get(key, default) if self.result else default


def is_bench_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "results").is_dir() or (path / "trajectories").is_dir())


def load_tasks(folder: Path) -> list[Task]:
    """Every task with a result or a trajectory, by name. Raises `TraceError` for a folder that is not
    a bench output folder."""
    if not is_bench_folder(folder):
        raise TraceError(
            f"{folder} is a folder but not an `rlm bench` output folder (it has no results/ or trajectories/); "
            "give a trace file (.jsonl) or the --out folder of `rlm bench`"
        )
    results = {p.stem: p for p in (folder / "results").glob("*.json")}
    trajectories = {p.stem: p for p in (folder / "trajectories").glob("*.jsonl")}
    return [
        Task(name, _read_result(results.get(name)), trajectories.get(name))
        for name in sorted({*results, *trajectories})
    ]


def _read_result(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_info(folder: Path) -> dict[str, Any]:
    """The folder's run.json (suite, method, models), or {} when it has none."""
    return _read_result(folder / "run.json") if (folder / "run.json").is_file() else {}  # type: ignore[return-value]


def trajectory_of(tasks: list[Task], wanted: str) -> Path:
    """The trajectory of the task named `wanted` (its id or file name), or a `TraceError` naming some
    tasks that exist."""
    for task in tasks:
        if wanted in (task.id, task.name):
            if task.trajectory is None:
                raise TraceError(f"task {wanted} has no trajectory (trajectories/{task.name}.jsonl is missing)")
            return task.trajectory
    names = ", ".join(task.id for task in tasks[:8]) + (" …" if len(tasks) > 8 else "")
    raise TraceError(f"no task {wanted} in this folder; its tasks: {names or '(none)'}")


def _score(task: Task) -> str:
    score = task.get("score")
    return f"{score:.3f}" if isinstance(score, int | float) else "-"


def _mean_score(tasks: list[Task]) -> str:
    scores = [s for s in (task.get("score") for task in tasks) if isinstance(s, int | float)]
    return f"{sum(scores) / len(scores):.3f} over {len(scores):,} scored" if scores else "no scores"


def _num(task: Task, key: str) -> float:
    value = task.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


def show_tasks(folder: Path, tasks: list[Task], console: Console | None = None) -> None:
    """The tasks as a table in the terminal, and how to look at one."""
    info = run_info(folder)
    table = Table(title=f"{len(tasks):,} tasks, mean score {_mean_score(tasks)}")
    ids = [neutralise(task.id) for task in tasks]
    table.add_column("task", no_wrap=True, min_width=max(map(len, ids), default=4))  # ids are what --task takes
    for column in ("status", "score", "cost", "tokens", "wall", "trajectory"):
        table.add_column(column, justify="right" if column in ("score", "cost", "tokens", "wall") else "left")
    for task, ident in zip(tasks, ids, strict=True):
        table.add_row(
            RichText(ident),  # Text, not str: markup in a file name or status stays text
            RichText(neutralise(str(task.get("status", "no result")))),
            _score(task),
            money(_num(task, "cost_usd")),
            f"{int(_num(task, 'total_tokens')):,}",
            seconds(_num(task, "wall_time_s")),
            "yes" if task.trajectory else "missing",
        )
    console = console or Console()
    shown = ", ".join(f"{key}={info[key]}" for key in ("suite", "method", "model", "sub_model") if info.get(key))
    console.print(neutralise(f"rlm bench {folder}" + (f": {shown}" if shown else "")), style="dim", markup=False)
    console.print(table)
    console.print(
        "rlm view FOLDER --task ID shows one; --html OUT writes an index page and a page per task", style="dim"
    )


def write_pages(
    folder: Path, out: Path, call_chars: int | None = CALL_CHARS, max_chars: int | None = MAX_CHARS
) -> tuple[Path, Path, int]:
    """An index page of the tasks and one page per trajectory. `out` is the index file when it ends
    in .html (pages beside it in <name>_tasks/), else a folder (index.html and tasks/ in it).
    Returns the index, the pages' folder and how many pages were written."""
    tasks = load_tasks(folder)
    if out.suffix.lower() == ".html":
        index, pages = out, out.parent / f"{out.stem}_tasks"
    else:
        index, pages = out / "index.html", out / "tasks"
    pages.mkdir(parents=True, exist_ok=True)
    written = 0
    for task in tasks:
        if task.trajectory is None:
            continue
        back = f'<p><a href="{esc(quote("../" + index.name))}">← all tasks</a> · score {_score(task)}</p>'
        try:
            trace = load_trace(task.trajectory, max_chars)
        except TraceError as error:
            body = back + f"<p class=bad>{esc(error)}</p>"
            (pages / f"{task.name}.html").write_text(page_html(task.id, body, script=False), encoding="utf-8")
        else:
            page = render_html(trace, task.id, call_chars, preface=back)
            (pages / f"{task.name}.html").write_text(page, encoding="utf-8")
        written += 1
    index.write_text(index_html(folder, tasks, pages.name), encoding="utf-8")
    return index, pages, written


def index_html(folder: Path, tasks: list[Task], pages: str) -> str:
    """The index page: the run's settings, the mean score, and a row per task linking to its page."""
    info = run_info(folder)
    settings = ", ".join(f"{key}={info[key]}" for key in ("suite", "method", "model", "sub_model") if info.get(key))
    rows = []
    for task in tasks:
        link = (
            f'<a href="{esc(quote(pages))}/{esc(quote(task.name))}.html">{esc(task.id)}</a>'
            if task.trajectory
            else f'{esc(task.id)} <span class="muted">(no trajectory)</span>'
        )
        status = str(task.get("status", "no result"))
        css = "ok" if status == "completed" else "bad"
        rows.append(
            f'<tr class="task"><td class="l">{link}</td><td class="l"><span class="{css}">{esc(status)}</span></td>'
            f"<td>{_score(task)}</td><td>{esc(money(_num(task, 'cost_usd')))}</td>"
            f"<td>{int(_num(task, 'total_tokens')):,}</td><td>{int(_num(task, 'sub_calls')):,}</td>"
            f"<td>{seconds(_num(task, 'wall_time_s'))}</td>"
            f'<td class="l">{esc(_clip(task.get("answer")))}</td><td class="l">{esc(_clip(task.get("gold")))}</td></tr>'
        )
    body = (
        f'<h1>rlm bench <span class="muted">{esc(folder.name)}</span></h1>'
        f"<p>{esc(settings)}</p><p>{len(tasks):,} tasks · mean score {_mean_score(tasks)}</p>"
        '<table><tr><th class="l">task</th><th class="l">status</th><th>score</th><th>cost</th><th>tokens</th>'
        '<th>sub-calls</th><th>wall</th><th class="l">answer</th><th class="l">gold</th></tr>'
        + "".join(rows)
        + "</table>"
    )
    return page_html(f"rlm bench {folder.name}", body, script=False)


def _clip(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= ANSWER_CHARS else text[:ANSWER_CHARS] + "…"
