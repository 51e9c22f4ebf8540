"""Untrusted text reaches a terminal escaped: the answer, -v panels and errors of `rlm query` run on a
real pseudo-terminal against the scripted server; pipes, --raw and --json as a program would read them."""

from __future__ import annotations

import json
import os
import select
import subprocess
import termios
from pathlib import Path

from rlm.scripted import ScriptedServer
from rlm.terminal import for_stream, json_safe, neutralise
from tests.test_cli import RLM_COMMAND, clean_env, query_args, run

CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x07"  # OSC 52: sets the user's clipboard
LINK = "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"  # OSC 8 hyperlink
TITLE = "\x1b]0;pwned\x07"  # window title
C1_CSI = "\x9b2J"  # clears the screen on terminals that read 8-bit controls
BIDI = "abc\u202edcba"  # right-to-left override
HOSTILE = f"ok {CLIPBOARD}{LINK}{TITLE}{C1_CSI} {BIDI}\tdone"
RAW_MARKS = ("\x1b]", "\x07", "\x9b", "\u202e")
# The model writes the hostile text as a Python literal, plus a comment holding a live title sequence.
BLOCK = f"```repl\n# {TITLE}\nhostile = {HOSTILE!r}\nprint(hostile)\nFINAL(hostile)\n```"


def test_neutralise_escapes_controls_and_bidi_but_keeps_text() -> None:
    shown = neutralise(HOSTILE + "\r\x00\x7f\u2066\u200f\u061c é 東京\n")
    assert not any(mark in shown for mark in RAW_MARKS)
    assert "\\x1b]52;c;" in shown and "\\x9b2J" in shown and "abc\\u202edcba" in shown
    assert shown.endswith("\\x0d\\x00\\x7f\\u2066\\u200f\\u061c é 東京\n") and "\tdone" in shown


def test_only_terminals_get_the_escaped_form(tmp_path: Path) -> None:
    with open(tmp_path / "out.txt", "w") as file:
        assert for_stream(HOSTILE, file) == HOSTILE
    main, secondary = os.openpty()
    try:
        with open(secondary, "w", closefd=False) as tty:
            assert for_stream(HOSTILE, tty) == neutralise(HOSTILE)
    finally:
        os.close(main)
        os.close(secondary)


def test_json_safe_is_the_same_json_without_raw_controls() -> None:
    document = json.dumps({"answer": HOSTILE + " é"}, ensure_ascii=False)
    safe = json_safe(document)
    assert json.loads(safe) == {"answer": HOSTILE + " é"}
    assert not any(mark in safe for mark in RAW_MARKS) and "é" in safe


def run_on_terminal(args: list[str], tmp_path: Path) -> tuple[int, str]:
    """Run `rlm` with stdout and stderr on a pseudo-terminal; what the terminal received, decoded."""
    main, secondary = os.openpty()
    termios.tcsetwinsize(secondary, (50, 250))
    process = subprocess.Popen(
        RLM_COMMAND + args, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary, env=clean_env(tmp_path)
    )
    os.close(secondary)
    received = bytearray()
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(main)
    return process.wait(timeout=60), received.decode("utf-8", errors="replace")


def test_answer_and_verbose_panels_are_escaped_on_a_terminal(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("test-root", [BLOCK])
    code, screen = run_on_terminal(query_args(scripted_server, tmp_path, "-v"), tmp_path)
    assert code == 0, screen
    assert not any(mark in screen for mark in RAW_MARKS), screen
    assert screen.count("\\x1b]52;c;cm0gLXJmIH4=\\x07") >= 2  # the cell's output and the answer
    assert "\\x1b]0;pwned\\x07" in screen  # the comment in the code panel
    assert "abc\\u202edcba" in screen and "\\x9b2J" in screen


def test_raw_prints_the_answer_byte_for_byte(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("test-root", [BLOCK])
    done = run(query_args(scripted_server, tmp_path, "--raw"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == HOSTILE + "\n"
    scripted_server.script("test-root", [BLOCK])
    code, screen = run_on_terminal(query_args(scripted_server, tmp_path, "--raw"), tmp_path)
    assert code == 0 and HOSTILE.replace("\n", "\r\n") in screen


def test_json_report_carries_the_answer_escaped(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("test-root", [BLOCK])
    done = run(query_args(scripted_server, tmp_path, "--json"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert not any(mark in done.stdout for mark in RAW_MARKS)
    assert json.loads(done.stdout)["answer"] == HOSTILE
