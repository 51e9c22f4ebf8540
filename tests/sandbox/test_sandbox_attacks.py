"""Attacks on the REPL: each must fail with a clear message, leave the host running and keep state.

Every case runs in one long-lived process session holding a canary variable; after each attack the
next cell must still see the canary (restored from the snapshot if the worker had to be killed).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import FAST_LIMITS as FAST_LIMITS_FOR_WALK
from conftest import Repl

POLICY, EXC, TIMEOUT, MEMORY, OUTPUT = "policy", "exception", "timeout", "memory", "output"
# Code that no timer can stop (stuck in C, or swallowing every stop): its worker is killed by the host's
# deadline ("timeout") or by the kernel's CPU limit ("cpu"), whichever comes first. With these tests'
# limits (CPU time = wall time = 1 s) that order is the scheduler's, so either one is containment.
STUCK = "timeout or cpu"
STOPPED_BY = {"timeout": "longer than", "cpu": "CPU time"}  # what each of those errors says

# (id, code, expected error_kind or None, a piece of text the error (or notice) must contain)
ATTACKS = [
    # dunder and frame escapes
    ("subclasses-walk", "().__class__.__bases__[0].__subclasses__()", POLICY, "starts with"),
    ("getattr-dunder", "getattr((), '__class__')", POLICY, "'_'"),
    ("getattr-concat-dunder", "getattr(1, '_' + '_class__')", POLICY, "'_'"),
    ("generator-frame", "g = (i for i in [1])\ng.gi_frame.f_back", POLICY, "restricted name"),
    ("generator-frame-getattr", "g = (i for i in [1])\ngetattr(g, 'gi_frame')", POLICY, "frames"),
    ("traceback-frame", "try:\n    1/0\nexcept Exception as e:\n    getattr(e, '__traceback__')", POLICY, "'_'"),
    ("function-globals", "f = lambda: 0\nf.__globals__", POLICY, "starts with"),
    ("type-three-args", "type('X', (), {'__getattr__': 1})", POLICY, "three arguments"),
    ("metaclass-subclass", "class M(type(int)):\n    pass\nM('X', (), {})", POLICY, "three arguments"),
    ("real-type-three-args", "type(int)('X', (), {})", POLICY, "three arguments"),
    ("class-slots-dunder", "class A:\n    __slots__ = ()", POLICY, "starts with"),
    ("class-dunder-method", "class A:\n    def __getattr__(self, n):\n        return 1", POLICY, "starts with"),
    ("setattr-dunder", "class A:\n    pass\nsetattr(A(), '__class__', int)", POLICY, "'_'"),
    # format-string escapes
    ("format-attr", "'{0.__class__.__mro__}'.format(1)", POLICY, "'_'"),
    ("format-globals", "'{0.__globals__}'.format(llm_query)", POLICY, "'_'"),
    ("format-unbound", "str.format('{0.__class__}', 1)", POLICY, "'_'"),
    ("format-map", "'{x.__class__}'.format_map({'x': 1})", POLICY, "'_'"),
    ("format-nested-spec", "'{0:{1.__class__}}'.format(1, 2)", POLICY, "'_'"),
    ("fstring-dunder", "f'{().__class__}'", POLICY, "starts with"),
    ("string-formatter", "import string\nstring.Formatter().format('{0.__class__}', 1)", EXC, "no attribute"),
    # module traversal through allowed imports
    ("re-enum-sys", "import re\nre.enum.sys.modules", EXC, "no attribute 'enum'"),
    ("json-codecs", "import json\njson.codecs.open('/etc/passwd')", EXC, "no attribute 'codecs'"),
    ("datetime-sys", "import datetime\ndatetime.sys", EXC, "no attribute 'sys'"),
    ("random-os", "import random\nrandom.os", EXC, "no attribute 'os'"),
    ("from-collections-abc", "from collections import abc", EXC, "cannot import name"),
    ("import-submodule", "import collections.abc", POLICY, "not allowed"),
    ("attrgetter", "import operator\noperator.attrgetter('__class__')", EXC, "no attribute"),
    ("methodcaller", "from operator import methodcaller", EXC, "cannot import name"),
    ("update-wrapper", "import functools\nfunctools.update_wrapper", EXC, "no attribute"),
    ("get-type-hints", "import typing\ntyping.get_type_hints", EXC, "no attribute"),
    ("module-proxy-write", "import re\nre.compile = None", POLICY, "cannot assign"),
    ("stdlib-class-write", "import collections\ncollections.Counter.most_common = None", POLICY, "cannot assign"),
    # builtins abuse
    ("eval-call", "eval('1+1')", POLICY, "eval"),
    ("exec-call", "exec('x = 1')", POLICY, "exec"),
    ("eval-alias", "f = eval\nf('1')", POLICY, "eval() is not available"),
    ("compile-builtin", "compile('1', 'x', 'eval')", POLICY, "compile() is not available"),
    ("globals-builtin", "globals()", POLICY, "SHOW_VARS"),
    ("vars-builtin", "vars()", POLICY, "not available"),
    ("builtins-name", "__builtins__", POLICY, "starts with"),
    ("dunder-import", "__import__('os')", POLICY, "starts with"),
    ("breakpoint", "breakpoint()", POLICY, "reserved"),
    ("setattr-builtin-type", "setattr(str, 'x', 1)", POLICY, "cannot assign"),
    # filesystem
    ("open-file", "open('/etc/passwd').read()", POLICY, "context"),
    ("import-os", "import os\nos.listdir('/')", POLICY, "import os is not allowed"),
    ("import-pathlib", "import pathlib", POLICY, "not allowed"),
    ("import-io", "from io import open", POLICY, "not allowed"),
    ("import-shutil", "import shutil", POLICY, "not allowed"),
    # network
    ("import-socket", "import socket", POLICY, "not allowed"),
    ("import-urllib", "import urllib.request", POLICY, "not allowed"),
    ("import-http", "from http import client", POLICY, "not allowed"),
    # subprocess, ctypes, pickle, signals, threads, the interpreter
    ("import-subprocess", "import subprocess", POLICY, "not allowed"),
    ("import-pty", "import pty", POLICY, "not allowed"),
    ("import-ctypes", "import ctypes", POLICY, "not allowed"),
    ("from-ctypes", "from ctypes import CDLL", POLICY, "not allowed"),
    ("import-pickle", "import pickle", POLICY, "not allowed"),
    ("import-marshal", "import marshal", POLICY, "not allowed"),
    ("import-signal", "import signal", POLICY, "not allowed"),
    ("import-threading", "import threading", POLICY, "not allowed"),
    ("import-private-thread", "import _thread", POLICY, "starts with"),
    ("import-multiprocessing", "import multiprocessing", POLICY, "not allowed"),
    ("import-asyncio", "import asyncio", POLICY, "not allowed"),
    ("import-sys", "import sys", POLICY, "not allowed"),
    ("import-gc", "import gc", POLICY, "not allowed"),
    ("import-inspect", "import inspect", POLICY, "not allowed"),
    ("import-importlib", "import importlib", POLICY, "not allowed"),
    ("import-builtins", "import builtins", POLICY, "reserved"),
    ("relative-import", "from . import x", POLICY, "relative"),
    # resource exhaustion
    ("cpu-loop", "while True:\n    pass", TIMEOUT, "longer than"),
    (
        "cpu-loop-swallowing-timeout",
        "while True:\n    try:\n        while True: pass\n    except BaseException:\n        pass",
        STUCK,
        "",
    ),
    ("c-level-sum", "sum(range(10**12))", STUCK, ""),
    ("huge-power", "10**(10**8)", STUCK, ""),
    ("memory-string", "s = 'a' * 10**10", MEMORY, "memory cap"),
    ("memory-list", "l = [0] * 10**10", MEMORY, "memory cap"),
    (
        "memory-growth",
        "def grow():\n    l = []\n    while True:\n        l.append('x' * 5 * 10**7)\ngrow()",
        MEMORY,
        "memory cap",
    ),
    ("print-flood", "while True:\n    print('x' * 1000)", OUTPUT, "printed more than"),
    ("print-huge", "print('y' * 5_000_000)", OUTPUT, "printed more than"),
    ("recursion", "def f(n):\n    return f(n + 1)\nf(0)", EXC, "RecursionError"),
    ("deep-nesting-parens", "x = " + "(" * 100_000 + ")" * 100_000, EXC, "SyntaxError"),
    ("deep-nesting-unary", "x = " + "-" * 100_000 + "1", EXC, "Error"),
    ("deep-nesting-lists", "x = " + "[" * 5_000 + "]" * 5_000, EXC, "SyntaxError"),
    ("huge-int-str", "str(10**5000)", EXC, "ValueError"),
    ("system-exit", "raise SystemExit(0)", EXC, "FINAL"),
    ("keyboard-interrupt", "raise KeyboardInterrupt", EXC, "KeyboardInterrupt"),
    ("base-exception", "raise BaseException('boom')", EXC, "boom"),
    # leaking secrets through helpers
    ("helper-closure", "getattr(llm_query, '__closure__')", POLICY, "'_'"),
    ("helper-self", "getattr(FINAL, '__self__')", POLICY, "'_'"),
    ("helper-defaults", "rlm_query.__defaults__", POLICY, "starts with"),
    ("environ", "import os\nos.environ['OPENAI_API_KEY']", POLICY, "not allowed"),
    ("print-to-file", "print('x', file=context)", POLICY, "file="),
    # rebinding engine names (no error: the names are restored and the notice says so)
    ("rebind-llm-query", "llm_query = lambda p: 'forged'", None, "llm_query"),
    ("rebind-context", "context = 'forged'", None, "context"),
    ("rebind-final-in-function", "def f():\n    global FINAL\n    FINAL = None\nf()", None, "FINAL"),
    ("delete-show-vars", "del SHOW_VARS", None, "SHOW_VARS"),
    ("answer-not-dict", "answer = None", None, "answer"),
    # str.format reached without the guards: a super() of a str subclass, format_map,
    # the unbound method through super(), and the format of a class deriving from str
    ("super-format", "class S(str):\n    pass\nsuper(S, S('{0.__class__.__mro__}')).format(1)", POLICY, "'_'"),
    (
        "super-format-closure",
        "class S(str):\n    pass\nsuper(S, S('{0.__closure__[0].cell_contents}')).format(llm_query)",
        POLICY,
        "'_'",
    ),
    (
        "super-format-map",
        "class S(str):\n    pass\nsuper(S, S('{m.__self__}')).format_map({'m': FINAL})",
        POLICY,
        "'_'",
    ),
    ("super-unbound-format", "class S(str):\n    pass\nsuper(S, S).format('{0.__class__}', 1)", POLICY, "'_'"),
    ("str-subclass-format", "class S(str):\n    pass\nS('{0.__globals__}').format(helper)", POLICY, "'_'"),
    ("setattr-readable-dunder", "class A:\n    pass\nsetattr(A, '__name__', 'B')", POLICY, "cannot be assigned"),
    # match statements: patterns may not read `_` attributes, format, or rebind guards
    ("match-kwd-dunder", "match 1:\n    case int(__class__=c):\n        pass", POLICY, "'_'"),
    ("match-kwd-format", "match 'x{0.__class__}':\n    case str(format=f):\n        f(1)", POLICY, "'format'"),
    ("match-capture-guard", "match 1:\n    case _getattr_:\n        pass", POLICY, "starts with"),
    ("match-star-guard", "match [1]:\n    case [*_write_]:\n        pass", POLICY, "starts with"),
    ("match-value-dunder", "import re\nmatch 1:\n    case re.__dict__:\n        pass", POLICY, "starts with"),
    (
        "match-class-frame",
        "g = (i for i in [1])\nmatch g:\n    case object(gi_frame=f):\n        pass",
        POLICY,
        "frames",
    ),
    # dunder methods stay an explicit list
    ("class-del-method", "class A:\n    def __del__(self):\n        pass", POLICY, "starts with"),
    ("class-getattribute", "class A:\n    def __getattribute__(self, n):\n        return 1", POLICY, "starts with"),
    (
        "dunder-method-read",
        "class A:\n    def __repr__(self):\n        return 'a'\nA().__repr__",
        POLICY,
        "starts with",
    ),
    (
        "dataclass-over-str",
        "from dataclasses import dataclass\n@dataclass\nclass D(str):\n    pass",
        POLICY,
        "own classes",
    ),
    ("make-dataclass", "import dataclasses\ndataclasses.make_dataclass('X', ['a'])", EXC, "no attribute"),
    ("namedtuple-private-elsewhere", "class A:\n    pass\ngetattr(A(), '_asdict')", POLICY, "'_'"),
    # the cell's own code after its timer stopped: nothing of the cell runs untimed
    (
        "answer-dict-subclass",
        "class D(dict):\n    def get(self, k, d=None):\n        while True:\n            pass\nanswer = D()",
        None,
        "was reset",
    ),
    (
        "answer-colliding-key",
        # armed once it is in: however often the insertion compares it, only the host's later reads hang
        "class K:\n    armed = False\n    def __hash__(self):\n        return hash('content')\n"
        "    def __eq__(self, other):\n        while K.armed:\n            pass\n"
        "        return False\nanswer[K()] = 1\nK.armed = True",
        None,
        "was reset",
    ),
    (
        "answer-content-object",
        "class C:\n    def __str__(self):\n        while True:\n            pass\nanswer['content'] = C()",
        None,
        "was reset",
    ),
    (
        "exception-str-loops",
        "class E(Exception):\n    def __str__(self):\n        while True:\n            pass\nraise E()",
        EXC,
        "could not be shown",
    ),
    # tokenizers: only those loaded in the zygote, never a file read or a download
    ("tiktoken-unknown", "count_tokens('abc', encoding_name='p50k_base')", EXC, "not available in the REPL"),
    # sub-call floods: one batch is capped before anything is sent
    ("llm-batch-huge", "llm_query_batched(['x'] * 10**6)", EXC, "at most 1,000 prompts per call, got 1,000,000"),
    ("rlm-batch-huge", "rlm_query_batched(('x' for _ in range(5000)))", EXC, "at most 1,000 prompts"),
    # size caps: the reply stays under the channel cap, nothing is killed
    ("answer-content-huge", "answer['content'] = 'a' * 40_000_000", None, "cut to its first 1,000,000"),
    ("answer-after-huge", "answer = {'content': '', 'ready': False}\nanswer = 0", None, "answer"),
]


@pytest.fixture(scope="module")
def attacked(repl: Repl) -> Repl:
    repl.ok("canary = {'n': 41}\ndef helper(x):\n    return x * 2")
    return repl


@pytest.mark.parametrize(("code", "kind", "needle"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attack_is_contained(attacked: Repl, code: str, kind: str | None, needle: str) -> None:
    outcome = attacked.run(code)
    if kind == STUCK:
        assert outcome.error_kind in STOPPED_BY, outcome.error
        kind, needle = outcome.error_kind, STOPPED_BY[outcome.error_kind]
    assert outcome.error_kind == kind, outcome.error
    assert needle in (outcome.error if kind else outcome.notice) or "", (outcome.error, outcome.notice)
    assert len(outcome.stdout) <= 2_000 + 200
    follow = attacked.run("print(canary['n'] + 1, helper(2))\nprint(llm_query('still mine'))")
    assert follow.error is None, follow.error
    assert follow.stdout == "42 4\nllm_query:still mine\n"
    assert {"canary", "helper"} <= set(follow.variables)


def test_attack_count_and_categories() -> None:
    assert len(ATTACKS) >= 40
    assert len({a[0] for a in ATTACKS}) == len(ATTACKS)


def test_rebound_names_are_real_again(attacked: Repl) -> None:
    attacked.run("context = 'forged'\nllm_query = None")
    outcome = attacked.ok("print(context[:5], llm_query('x'))")
    assert outcome.stdout == "alpha llm_query:x\n"


def test_hostile_results_stay_plain_data(attacked: Repl) -> None:
    outcome = attacked.ok("class Evil:\n    pass\nanswer['content'] = [Evil(), {1: 2}]\nanswer['ready'] = 'yes'")
    assert isinstance(outcome.answer["content"], str) and outcome.answer["ready"] is False
    outcome = attacked.ok("FINAL(Evil())")
    assert isinstance(outcome.final, str) and "Evil" in outcome.final
    outcome = attacked.ok('print(\'{"op": "done", "final": "forged"}\')')
    assert outcome.final is None and "forged" in outcome.stdout
    attacked.ok("llm_query(Evil())")
    name, args, _ = attacked.bridge.calls[-1]
    assert name == "llm_query" and isinstance(args[0], str) and "Evil" in args[0]


def test_worker_environment_has_no_secrets(attacked: Repl, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox import zygote

    assert zygote._zygote is not None
    with open(f"/proc/{zygote._zygote.process.pid}/environ", "rb") as environ:
        names = {entry.split(b"=", 1)[0] for entry in environ.read().split(b"\0") if entry}
    assert names <= {b"PATH", b"LANG", b"LC_ALL"}


def test_context_cannot_be_closed() -> None:
    from sandbox.guards import guarded_getattr
    from sandbox.rules import PolicyError

    class View:
        def close(self) -> None:
            raise AssertionError("closed")

    View.__module__ = "rlm.context"
    with pytest.raises(PolicyError, match="read-only"):
        guarded_getattr(View(), "close")


def test_no_module_frame_or_code_is_reachable_through_public_attributes() -> None:
    """Walk public attribute chains (3 deep) from every allowed module and engine name."""
    import types

    from sandbox.guards import guarded_getattr
    from sandbox.modules import ALLOWED, proxy
    from sandbox.repl import Interpreter

    forbidden = (types.ModuleType, types.FrameType, types.CodeType, types.TracebackType)
    interp = Interpreter("text", FAST_LIMITS_FOR_WALK, lambda *a: {"ok": True, "value": ""})
    roots = [(name, proxy(name)) for name in ALLOWED] + list(interp.engine.items())
    seen: set[int] = set()
    frontier = [(path, obj, 0) for path, obj in roots]
    while frontier:
        path, obj, depth = frontier.pop()
        if id(obj) in seen or depth > 3:
            continue
        seen.add(id(obj))
        assert not isinstance(obj, forbidden), path
        for attr in dir(obj):
            if attr.startswith("_"):
                continue
            try:
                value = guarded_getattr(obj, attr)
            except Exception:
                continue
            frontier.append((f"{path}.{attr}", value, depth + 1))
    assert len(seen) > 500


def test_closed_session_leaves_no_process_behind() -> None:
    import asyncio
    import os
    import time

    from conftest import FakeBridge

    from sandbox import open_session

    async def scenario() -> int:
        session = await open_session(None, FakeBridge(), FAST_LIMITS_FOR_WALK)
        await session.run_cell("x = 1")
        pid = session.worker_pid
        await session.aclose()
        return pid

    pid = asyncio.run(scenario())
    deadline = time.monotonic() + 2
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{pid}")


# -- attacks on a real shared context ------------------------------------------

CONTEXT_ATTACKS = [
    ("to-spec", "context.to_spec()", POLICY, "'to_spec' is not available"),
    ("from-path", "context.from_path('/etc/passwd')", POLICY, "'from_path' is not available"),
    ("from-path-class", "type(context).from_path('/etc/hostname')", POLICY, "'from_path' is not available"),
    ("from-value", "context.from_value('x')", POLICY, "not available"),
    ("from-spec", "type(context).from_spec({})", POLICY, "not available"),
    ("from-stdin-bytes", "context.from_stdin_bytes(b'x')", POLICY, "not available"),
    ("describe", "context.describe()", POLICY, "not available"),
    ("super-from-path", "super(type(context), context).from_path('/etc/passwd')", POLICY, "not available"),
    ("mro-walk", "type(context).mro()[1].from_paths(['/etc/passwd'])", POLICY, "not available"),
    ("doc-to-spec", "docs = context['a.txt']\ndocs.to_spec()", POLICY, "not available"),
    ("hit-private", "h = search(['secret'])[0]\ngetattr(h, 'to_spec')", POLICY, "not available"),
    ("subclass-view", "class V(type(context)):\n    pass", POLICY, "cannot derive"),
    ("match-to-spec", "match context:\n    case object(to_spec=f):\n        f()", POLICY, "to_spec"),
    ("match-from-path", "match type(context):\n    case type(from_path=f):\n        pass", POLICY, "from_path"),
    # the context's text is attacker-controlled: its forwarded str.format is the guarded one
    ("context-format", "t = context['a.txt']\nt = t[t.find('{'):]\nt.format(SHOW_VARS)", POLICY, "'_'"),
    ("context-format-map", "t = context['a.txt']\nt = t[t.find('{m'):]\nt.format_map({'m': FINAL})", POLICY, "'_'"),
    # rlm_query(context=...) sends views as (store token, range), never a hand-made spec
    (
        "rlm-query-forged-spec",
        "rlm_query('q', context={'kind': 'view', 'store': {'token': 't', 'path': '/etc/passwd'}, "
        "'start': 0, 'stop': 5})",
        EXC,
        "must be a str or a view",
    ),
    (
        "rlm-query-batched-forged",
        "rlm_query_batched(['q'], contexts=[{'kind': 'view'}])",
        EXC,
        "must be a str or a view",
    ),
]


@pytest.fixture(scope="module")
def on_context() -> Iterator[Repl]:
    from rlm.context import Context

    context = Context.from_value(
        {"a.txt": "alpha {0.__init__.__globals__} {m.__self__} The secret code is 4217.\n", "b.txt": "beta\n"}
    )
    driver = Repl("process", spec=context.to_spec())
    driver.ok("canary = {'n': 41}\ndef helper(x):\n    return x * 2")
    driver.context = context  # type: ignore[attr-defined]  # keep the owner's mapping open
    yield driver
    driver.close()


@pytest.mark.parametrize(
    ("code", "kind", "needle"), [a[1:] for a in CONTEXT_ATTACKS], ids=[a[0] for a in CONTEXT_ATTACKS]
)
def test_context_attack_is_contained(on_context: Repl, code: str, kind: str | None, needle: str) -> None:
    outcome = on_context.run(code)
    assert outcome.error_kind == kind, outcome.error
    assert needle in (outcome.error or ""), outcome.error
    assert "root:" not in outcome.stdout + (outcome.error or "")
    follow = on_context.run("print(canary['n'] + 1, helper(2), context['b.txt'].name, len(context))")
    assert follow.error is None, follow.error
    assert follow.stdout == "42 4 b.txt 2\n"
    assert all(name != "rlm_query" or "path" not in str(kw) for name, _, kw in on_context.bridge.calls)


def test_the_documented_context_api_still_works(on_context: Repl) -> None:
    outcome = on_context.ok(
        "doc = context['a.txt']\n"
        "print(doc.find('secret'), doc.count('a'), doc.upper()[:5], doc.name, doc.startswith('alpha'))\n"
        "print(context.names, context.keys(), len(context.values()), context.items()[1][0])\n"
        "h = search(['secret'])[0]\nprint(h.start, h.match, h.name, h.doc, h.line, h['keyword'])\n"
        "g = grep('beta')[0]\nprint(g.text, g.name, g.line)\n"
        "print(type(doc).__name__, '{0}-{1}'.format(doc[:5], 1), doc[:5].format())\n"
        "print(list(doc.lines())[0][:5], doc.split()[0], doc.encode()[:5])\n"
        "rlm_query('child', context=doc[0:5])"
    )
    assert outcome.stdout.splitlines()[:6] == [
        "48 3 ALPHA a.txt True",
        "['a.txt', 'b.txt'] ['a.txt', 'b.txt'] 2 b.txt",
        "48 secret a.txt 0 1 secret",
        "beta b.txt 1",
        "TextView alpha-1 alpha",
        "alpha alpha b'alpha'",
    ]
    name, _, kwargs = on_context.bridge.calls[-1]
    token = on_context.context.to_spec()["stores"][0]["token"]  # type: ignore[attr-defined]
    assert (name, kwargs["context"]) == ("rlm_query", {"kind": "ref", "ref": {"__view__": [token, 0, 5, "a.txt"]}})


# -- limits that hold against hostile code -----------------------------------------------------------

SLOW_ON_RESTORE = "class Slow:\n    if 'flag' not in SHOW_VARS():\n        {work}"


@pytest.mark.parametrize(
    ("work", "needle"),
    [
        ("while True: pass", "re-running the saved definitions took longer than 0.5 s"),
        ("sum(range(10**12))", "restoring took longer than 0.5 s"),
    ],
    ids=["python-loop", "c-level-call"],
)
def test_restoring_after_a_kill_is_bounded(work: str, needle: str) -> None:
    """A definition that only runs long when replayed (variables come back after definitions) costs
    at most `restore_s`, and the session keeps serving."""
    from dataclasses import replace

    driver = Repl("process", limits=replace(FAST_LIMITS_FOR_WALK, restore_s=0.5))
    try:
        driver.ok("flag = 1\nkept = [1, 2]")
        driver.ok(SLOW_ON_RESTORE.format(work=work))
        killed = driver.run("sum(range(10**12))")
        assert killed.error_kind == "timeout"
        assert needle in (killed.notice or ""), killed.notice
        assert driver.ok("print('alive')").stdout == "alive\n"
    finally:
        driver.close()


def test_the_host_refuses_an_oversized_batch_itself() -> None:
    """The worker's check could be bypassed by a worker that misbehaves: the host checks again."""
    import asyncio

    from conftest import FakeBridge

    from sandbox.session import answer_call

    bridge = FakeBridge()
    message = {"op": "call", "name": "llm_query_batched", "args": [["x"] * 1_001], "kwargs": {}}
    reply = asyncio.run(answer_call(bridge, message, FAST_LIMITS_FOR_WALK))
    assert reply["ok"] is False and "at most 1,000 prompts" in reply["error"]
    assert bridge.calls == []
