"""`rlm view --html`: pages of real traces (runs against the scripted server), read back as HTML and
loaded in a real headless chromium: the tree and timeline hold the right counts, bad lines show as
marked gaps, a hostile trajectory stays text, bench folders get an index, notebooks get the page."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from rlm import RLM
from rlm.bench import run_bench
from rlm.cli import main
from rlm.scripted import ScriptedServer
from rlm.scripted.solvers import install
from rlm.view import load_trace
from rlm.view.html import render_html
from rlm.view.page import SCRIPT
from tests.test_view import traced_run

ROOT, SUB = "openai/test-root", "openai/test-sub"
PWNED = "document.title='pwned'"
HOSTILE = (
    f'<script>{PWNED}</script><img src=x onerror="{PWNED}"></details></pre></table>'
    f'<svg onload="{PWNED}"><a href="javascript:{PWNED}">x</a>" onmouseover=\'{PWNED}\' &amp; '
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium; .ci/run installs it as root)"
)


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, and the text of its <title>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def count(self, tag: str, css: str) -> int:
        return sum(t == tag and css in (a.get("class") or "").split() for t, a in self.tags)


def parse(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


def view(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["view", *args])
    return result.exit_code, result.output


def hostile_run(server: ScriptedServer, tmp_path: Path) -> Path:
    """A real run whose replies, outputs, errors and sub-call texts carry markup and a 300,000-character
    line; then, as if edited by hand, markup in the fields a model does not write (model, status)."""
    trace = traced_run(server, tmp_path, printed=HOSTILE + "x" * 300_000)
    lines = []
    for line in trace.read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "model_call":
            event["model"] = HOSTILE
            event["response"] = HOSTILE
        if event["type"] == "run_end":
            event["status"] = HOSTILE
        if event["type"] == "cell_end":
            event["error"], event["error_kind"] = HOSTILE, HOSTILE
        if event["type"] == "turn_end":
            event["text"] = HOSTILE + str(event.get("text"))
        lines.append(json.dumps(event))
    trace.write_text("\n".join(lines) + "\n")
    return trace


def browse(page: Path, tmp_path: Path) -> tuple[Tags, str, list[str]]:
    """The page loaded in headless chromium: its DOM after scripts ran, that DOM's raw text, and the
    console lines it logged (errors, refused scripts, policy violations)."""
    assert CHROMIUM is not None
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return parse(run.stdout), run.stdout, console


def test_page_holds_header_tables_tree_and_a_bar_per_call_and_cell(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    trace = load_trace(traced_run(scripted_server, tmp_path))
    page = render_html(trace, "run.jsonl")
    tags = parse(page)
    cells = sum(len(node.cells()) for node in trace.nodes.values())
    assert (len(trace.calls), cells) == (6, 3)
    assert tags.count("div", "call") == 6 and tags.count("div", "cell") == 3
    assert tags.count("div", "sub") == 3 and tags.count("div", "root") == 3
    assert tags.count("details", "node") == 2 and tags.count("details", "turn") == 3
    assert all(t != "link" and "src" not in a for t, a in tags.tags)  # nothing loaded from anywhere
    bars = [a for t, a in tags.tags if "bar" in (a.get("class") or "").split() and "data-for" in a]
    ids = {a.get("id") for _, a in tags.tags}
    assert len(bars) == 9 and all(bar["data-for"] in ids for bar in bars)  # each bar finds its entry
    assert "completed" in page and "openai/test-sub" in page and "6 model calls" in page
    assert re.search(r"<tr><td class=\"l\">openai/test-sub</td>.*?<td>3</td>", page)  # the per-model table


def test_the_policy_runs_only_the_pages_own_script(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    page = render_html(load_trace(traced_run(scripted_server, tmp_path)))
    policy = next(a["content"] for t, a in parse(page).tags if t == "meta" and a.get("http-equiv")) or ""
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert policy.startswith("default-src 'none'; style-src 'unsafe-inline'; ")
    assert f"script-src 'sha256-{digest}'" in policy and "unsafe-inline'; script-src" in policy
    assert page.count("<script>") == 1 and f"<script>{SCRIPT}</script>" in page


def test_a_hostile_trajectory_renders_as_text(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    trace = load_trace(hostile_run(scripted_server, tmp_path))
    page = render_html(trace)
    tags = parse(page)
    assert not {t for t, _ in tags.tags} & {"img", "svg"} and [t for t, _ in tags.tags].count("script") == 1
    assert not [(t, a) for t, a in tags.tags if any(k.startswith("on") for k in a)]
    assert not [a for t, a in tags.tags if t == "a" and not (a.get("href") or "").startswith("#")]
    assert page.count("<details") == page.count("</details>")
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page  # shown, as text
    assert "more characters not shown" in page and len(page) < 600_000  # the huge line is cut
    whole = tmp_path / "whole.html"
    assert view(str(tmp_path / "run.jsonl"), "--html", str(whole), "--full")[0] == 0
    assert "x" * 300_000 in whole.read_text()  # unless asked for whole


def test_bad_lines_show_as_marked_gaps(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    lines = traced_run(scripted_server, tmp_path).read_text().splitlines()
    lines.insert(3, "this is not JSON")
    lines.insert(5, json.dumps(["not", "an", "event"]))
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # the run_end line cut mid-way
    out = tmp_path / "broken.html"
    code, output = view(str(broken), "--html", str(out))
    assert code == 0 and f"wrote {out}" in output
    tags = parse(out.read_text())
    assert tags.count("span", "gap") == 3 and tags.count("div", "gapmark") == 3
    assert "line 4: not JSON" in out.read_text() and "no run_end yet" in out.read_text()


def test_view_html_says_where_it_wrote_and_refuses_what_it_cannot_do(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    trace = traced_run(scripted_server, tmp_path)
    code, output = view(str(trace), "--html", str(tmp_path))  # a folder: the page goes in it
    assert code == 0 and (tmp_path / "run.html").is_file() and "KB)" in output
    for args, message in [
        ((str(trace), "--task", "x"), "--task picks a task of an `rlm bench` output folder"),
        ((str(trace), "--html", str(tmp_path / "no" / "such" / "x.html")), "cannot write"),
        ((str(trace), "--follow", "--html", "x.html"), "does not go with --html"),
        ((str(tmp_path),), "not an `rlm bench` output folder"),
    ]:
        code, output = view(*args)
        assert code == 1 and message in output and "Traceback" not in output, output


def bench_folder(server: ScriptedServer, tmp_path: Path) -> tuple[Path, list[str]]:
    """A real `rlm bench` output folder of two tasks solved by the scripted solver; its task ids."""
    root, sub = install(server)
    folder = tmp_path / "bench"
    results = run_bench(
        "sniah",
        model=f"openai/{root}",
        sub_model=f"openai/{sub}",
        n=2,
        length=8192,
        out_dir=folder,
        api_base=server.base_url,
        api_key="x",
        progress=False,
        max_iterations=4,
    )
    return folder, [result.id for result in results]


def test_bench_folder_lists_tasks_picks_one_and_writes_an_index(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    folder, ids = bench_folder(scripted_server, tmp_path)
    code, output = view(str(folder))
    assert code == 0 and "2 tasks" in output and all(task in output for task in ids), output
    code, output = view(str(folder), "--task", ids[0])
    assert code == 0 and "completed" in output and "root" in output
    code, output = view(str(folder), "--task", "no-such-task")
    assert code == 1 and "no task no-such-task" in output and ids[0] in output
    code, output = view(str(folder), "--html", str(tmp_path / "site"))
    assert code == 0 and "2 task pages" in output
    index = (tmp_path / "site" / "index.html").read_text()
    links = re.findall(r'href="(tasks/[^"]+)"', index)
    assert len(links) == 2 and index.count('class="task"') == 2
    for link in links:
        page = (tmp_path / "site" / link).read_text()
        assert 'href="../index.html"' in page and parse(page).count("div", "bar") > 0
    code, output = view(str(folder), "--html", str(tmp_path / "all.html"))  # an index file: pages beside it
    assert code == 0 and len(list((tmp_path / "all_tasks").glob("*.html"))) == 2
    assert 'href="all_tasks/' in (tmp_path / "all.html").read_text()
    code, output = view(str(folder), "--task", ids[1], "--html", str(tmp_path / "one.html"))
    assert code == 0 and "rlm run" in (tmp_path / "one.html").read_text()


def test_a_notebook_shows_the_page_of_a_result_that_kept_its_trajectory(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.script("test-root", ["```repl\nprint(llm_query('hi'))\n```", "FINAL(<b>done</b>)"])
    scripted_server.script("test-sub", ["<script>" + PWNED + "</script>"])
    rlm = RLM(model=ROOT, sub_model=SUB, api_base=scripted_server.base_url, api_key="k")
    result = rlm.query("data", "q")
    shown = result._repr_html_()
    tags = parse(shown)
    frames = [a for t, a in tags.tags if t == "iframe"]
    assert len(frames) == 1 and frames[0]["sandbox"] == "allow-scripts"  # its own origin, away from the notebook
    inner = parse(frames[0]["srcdoc"] or "")
    assert inner.count("div", "call") == 3 and inner.count("div", "cell") == 1
    assert [t for t, _ in tags.tags].count("script") == 0 and [t for t, _ in inner.tags].count("script") == 1
    result.trajectory.clear()
    assert "iframe" not in result._repr_html_()


@needs_browser
def test_the_page_loads_in_a_browser_and_its_script_counts_the_bars(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    out = tmp_path / "run.html"
    assert view(str(traced_run(scripted_server, tmp_path)), "--html", str(out))[0] == 0
    dom, raw, console = browse(out, tmp_path)
    assert console == []  # no error, no refused script, no policy violation
    assert re.search(r'<span id="tl-count">6 calls, 3 cells</span>', raw)  # the script ran
    assert dom.count("div", "bar") == 9 and dom.count("details", "node") == 2
    assert dom.title == "rlm run run.jsonl"


@needs_browser
def test_a_hostile_trajectory_runs_no_script_in_a_browser(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    out = tmp_path / "hostile.html"
    assert view(str(hostile_run(scripted_server, tmp_path)), "--html", str(out))[0] == 0
    dom, raw, console = browse(out, tmp_path)
    assert console == []  # nothing even tried to run and was refused
    assert dom.title == "rlm run run.jsonl" and "pwned" not in dom.title
    assert not {t for t, _ in dom.tags} & {"img", "svg"} and [t for t, _ in dom.tags].count("script") == 1
    assert re.search(r'<span id="tl-count">\d+ calls, \d+ cells</span>', raw)  # the page's own script ran


@needs_browser
def test_a_bench_index_and_its_task_pages_load_in_a_browser(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    folder, ids = bench_folder(scripted_server, tmp_path)
    assert view(str(folder), "--html", str(tmp_path / "site"))[0] == 0
    dom, _, console = browse(tmp_path / "site" / "index.html", tmp_path)
    assert console == [] and dom.count("tr", "task") == 2
    links = [a["href"] for t, a in dom.tags if t == "a"]
    page, _, console = browse(tmp_path / "site" / (links[0] or ""), tmp_path)
    assert console == [] and page.count("div", "bar") > 0 and page.title == f"rlm run {ids[0]}"
