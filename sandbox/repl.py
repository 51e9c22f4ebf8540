"""The REPL itself, the same in the worker process and in the in-process mode.

An `Interpreter` owns one namespace: the engine names (`context`, the query functions, `answer`,
`FINAL`, ...), the guards, and the user's variables. `run()` compiles a cell under the policy,
executes it, restores any engine name the cell rebound, and returns a plain dict (the fields of
`CellOutcome`, plus the snapshot the host keeps to survive a worker restart).
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import time
import traceback
from collections.abc import Callable
from typing import Any

from sandbox.guards import REPL_MODULE, guard_globals, hold_repl_module
from sandbox.limits import CellLimits
from sandbox.loop_plan import PREFETCH_NAME
from sandbox.modules import ModuleProxy
from sandbox.output import OutputBuffer, OutputFlood, Printer
from sandbox.plain import NotPlain, context_ref, decode, encode, exact_str, stores_of, to_plain
from sandbox.policy import ECHO_NAME, CompiledCell, compile_cell
from sandbox.prefetch import Prefetcher
from sandbox.rules import PolicyError
from sandbox.safe_builtins import make_builtins

HostCall = Callable[[str, list[Any], dict[str, Any]], Any]
QUERY_ROLES = ("sub", "aggregate")  # llm_query(..., role="aggregate"): a final synthesis, for the strong model
_TRACE_FRAMES = 6
_MESSAGE_CHARS = 2_000


class CellTimeout(BaseException):
    """Raised into a cell that ran past its time limit (BaseException: `except Exception` won't eat it)."""


class CellCpuLimit(CellTimeout):
    """Raised into a cell that used up its CPU time."""


class CellCancelled(CellTimeout):
    """Raised into a cell whose run was cancelled (the answer was found, a budget tripped, Ctrl-C)."""


class QueryError(RuntimeError):
    """A sub-call (llm_query, rlm_query, ...) failed on the host; the message says why."""


def build_context(spec: dict[str, Any] | None) -> Any:
    """The `context` object of a session: a str for text specs, else `rlm.context.Context`."""
    if spec is None:
        return None
    if spec.get("kind") == "text":
        return str(spec.get("text", ""))
    from rlm.context import Context

    return Context.from_spec(spec)


def _query_options(model: Any, role: Any) -> dict[str, Any]:
    """The keyword arguments of an llm_query call; `role` is only sent when the cell gave one."""
    options: dict[str, Any] = {"model": to_plain(model)}
    if role is not None:
        if role not in QUERY_ROLES:
            raise ValueError(f"role must be one of {', '.join(map(repr, QUERY_ROLES))}, not {to_plain(role)!r}")
        options["role"] = str(role)
    return options


def namespace_extras(context: Any = None) -> dict[str, Any]:
    """The search helpers of `rlm.search` (bound to `context` when it offers `bind`), or nothing."""
    try:
        import rlm.search as search
    except ImportError:
        return {}
    if hasattr(search, "bind"):
        return dict(search.bind(context))
    return {name: getattr(search, name) for name in getattr(search, "__all__", ()) if hasattr(search, name)}


class Interpreter:
    """One persistent REPL namespace and the rules for running cells in it."""

    def __init__(self, context: Any, limits: CellLimits, call_host: HostCall, policy: bool = True) -> None:
        self.limits = limits
        self.policy = policy  # False only in tests of the OS layer: cells are then plain Python
        self.call_host = call_host
        self.out = OutputBuffer(limits.output_chars, limits.flood_chars)
        self.sources: dict[str, list[str]] = {}
        self.cell_no = 0
        self.final: str | None = None
        self.running = False
        self.restoring = False  # re-running definitions after a restart: no host calls
        self.prefetcher = Prefetcher(self._host)  # serial llm_query loops, see sandbox/prefetch.py
        self.engine = self._engine_names(context)
        self.stores = stores_of(context)[0]  # what snapshot views may point into (sandbox/plain.py)
        hold_repl_module()  # released by in-process sessions; a sandbox process keeps it to its end
        self.ns: dict[str, Any] = {
            "__builtins__": make_builtins(),
            "__name__": REPL_MODULE,
            "_print_": lambda _getattr=None: Printer(self.out),
            ECHO_NAME: self._echo,
            PREFETCH_NAME: self.prefetcher,
            **guard_globals(),
            **self.engine,
            "answer": {"content": "", "ready": False},
        }
        if not policy:
            self.ns["__builtins__"] = builtins
            self.ns["print"] = Printer(self.out)._call_print  # still the cell's output

    # -- the names the cell sees ---------------------------------------------------------------

    def _engine_names(self, context: Any) -> dict[str, Any]:
        host = self._host

        prefetcher = self.prefetcher

        def llm_query(prompt: Any, model: str | None = None, role: str | None = None) -> Any:
            prefetcher.before_query()
            return host("llm_query", [to_plain(prompt)], _query_options(model, role))

        def llm_query_batched(prompts: Any, model: str | None = None, role: str | None = None) -> Any:
            return host("llm_query_batched", [self._batch("llm_query_batched", prompts)], _query_options(model, role))

        def rlm_query(prompt: Any, model: str | None = None, context: Any = None) -> Any:
            return host("rlm_query", [to_plain(prompt)], {"model": to_plain(model), "context": context_ref(context)})

        def rlm_query_batched(prompts: Any, model: str | None = None, contexts: Any = None) -> Any:
            refs = None if contexts is None else [context_ref(c) for c in contexts]
            batch = self._batch("rlm_query_batched", prompts)
            return host("rlm_query_batched", [batch], {"model": to_plain(model), "contexts": refs})

        names = {
            "context": context,
            "llm_query": llm_query,
            "llm_query_batched": llm_query_batched,
            "rlm_query": rlm_query,
            "rlm_query_batched": rlm_query_batched,
            "SHOW_VARS": self._show_vars,
            "FINAL": self._final,
            "FINAL_VAR": self._final_var,
        }
        return {**namespace_extras(context), **names}

    def _batch(self, name: str, prompts: Any) -> list[Any]:
        """The prompts of a batched call as plain data, refused before any work if there are too many."""
        batch = list(prompts)
        problem = self.limits.batch_problem(name, batch)
        if problem:
            raise ValueError(problem)
        return to_plain(batch)

    def _host(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self.restoring:
            raise QueryError(f"{name}() is not available while definitions are re-run after a restart")
        reply = self.call_host(name, args, kwargs)
        if not reply.get("ok"):
            raise QueryError(str(reply.get("error", "the host call failed")))
        return reply.get("value")

    def answer_so_far(self) -> dict[str, Any]:
        """The `answer` dict as plain data, also while a cell runs (a cancelled run keeps it).

        Runs outside the cell's timer too, so it calls no method of anything the cell made: only an
        exact dict with exact str keys counts, and only str (or int/float) content and bool `ready`."""
        content, ready, _ = _plain_answer(self.ns.get("answer"), self.limits.answer_chars)
        return {"content": content, "ready": ready}

    def _echo(self, value: Any) -> None:
        if value is not None:
            self.out.write(repr(value) + "\n")

    def user_variables(self) -> dict[str, Any]:
        skip = self.engine.keys() | {"answer"}
        return {
            k: v for k, v in self.ns.items() if not k.startswith("_") and k not in skip and type(v) is not ModuleProxy
        }

    def _show_vars(self) -> dict[str, str]:
        return {name: type(value).__name__ for name, value in self.user_variables().items()}

    def _final(self, value: Any) -> None:
        final = exact_str(str(value))
        if len(final) > self.limits.answer_chars:
            self.out.write(f"[FINAL: the answer was cut to its first {self.limits.answer_chars:,} characters]\n")
            final = final[: self.limits.answer_chars]
        self.final = final
        self.ns["answer"] = {"content": final, "ready": True}

    def _final_var(self, name: Any) -> None:
        if isinstance(name, str) and name in self.user_variables():
            value = self.ns[name]
        elif isinstance(name, str) and name.isidentifier():
            raise NameError(f"FINAL_VAR: there is no variable named {name!r}; define it first or call FINAL(value)")
        else:
            value = name
        self._final(value)

    # -- running cells -------------------------------------------------------------------------

    def run(self, code: str, cell_no: int | None = None) -> dict[str, Any]:
        """Run one cell; every failure of the cell comes back as data, never as an exception."""
        self.cell_no = cell_no or self.cell_no + 1
        filename = f"<cell {self.cell_no}>"
        started = time.perf_counter()
        self.out.reset()
        self.final = None
        error, kind, replay = self._execute(code, filename)
        notices = self._restore_engine_names()
        if self.out.total > self.limits.output_chars:
            notices.append(f"output cut: the cell printed {self.out.total:,} characters")
        answer = self.answer_so_far()
        snapshot = self.snapshot()
        snapshot["answer"] = answer
        return {
            "op": "done",
            "stdout": self.out.getvalue(),
            "error": error,
            "error_kind": kind,
            "duration_s": time.perf_counter() - started,
            "answer": answer,
            "final": self.final,
            "variables": sorted(self.user_variables()),
            "notice": "; ".join(notices) or None,
            "snapshot": snapshot,
            "replay": replay if error is None else [],
        }

    def _execute(self, code: str, filename: str) -> tuple[str | None, str | None, list[str]]:
        if len(code) > self.limits.code_chars:
            return f"the cell is longer than {self.limits.code_chars:,} characters", "policy", []
        compiled = compile_cell(code, filename) if self.policy else _compile_plain(code, filename)
        if compiled.code is None:
            kind = "policy" if compiled.error and compiled.error.startswith("PolicyError") else "exception"
            return compiled.error, kind, []
        self.sources[filename] = code.splitlines()
        self.running = True
        try:
            exec(compiled.code, self.ns)
        except BaseException as exc:  # the cell's SystemExit, KeyboardInterrupt, ... are contained
            if _is_engine_stop(exc):  # our own message runs no cell code: a repeat stop must not cut it
                self.running = False
            try:  # else still on the cell's timer: str(exc) may run the cell's own __str__/__repr__
                return self._describe(exc), _error_kind(exc), []
            except BaseException:
                return f"{type(exc).__name__}: (its message could not be shown)", _error_kind(exc), []
        finally:
            self.running = False
        return None, None, compiled.replay

    def _describe(self, exc: BaseException) -> str:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in self.sources]
        lines = []
        if frames:
            lines.append("Traceback (most recent call last):")
            shown = [(f.filename, f.lineno, f.name) for f in frames]
            collapsed = [(key, len(list(group))) for key, group in itertools.groupby(shown)]
            for (filename, lineno, name), repeats in collapsed[-_TRACE_FRAMES:]:
                where = "" if name == "<module>" else f", in {name}"
                lines.append(f"  {filename}, line {lineno}{where}")
                source = self.sources[filename]
                if lineno and 0 < lineno <= len(source):
                    lines.append("    " + source[lineno - 1].strip())
                if repeats > 1:
                    lines.append(f"  [previous line repeated {repeats - 1} more times]")
        message = str(exc)
        if len(message) > _MESSAGE_CHARS:
            message = message[:_MESSAGE_CHARS] + " ..."
        lines.append(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
        hint = self._hint(exc)
        if hint:
            lines.append(hint)
        return "\n".join(lines)

    def _hint(self, exc: BaseException) -> str:
        if isinstance(exc, MemoryError):
            return (
                f"The cell hit the REPL memory cap ({self.limits.memory_mb} MB); "
                "work on slices or chunks of the context instead of copies of all of it."
            )
        if isinstance(exc, RecursionError):
            return f"The REPL allows about {self.limits.recursion} nested calls; use a loop or an explicit stack."
        if isinstance(exc, CellCpuLimit):
            return f"The cell may use {self.limits.cell_cpu_s:g} s of CPU; do less per cell or use llm_query."
        if isinstance(exc, CellTimeout):
            return f"The cell ran longer than {self.limits.timeout_s:g} s; do less per cell or use llm_query."
        if isinstance(exc, SystemExit | KeyboardInterrupt):
            return "Exiting is not possible in the REPL; call FINAL(x) to give the answer."
        return ""

    def _restore_engine_names(self) -> list[str]:
        notices = []
        for name, value in self.engine.items():
            if self.ns.get(name) is not value:
                self.ns[name] = value
                notices.append(f"`{name}` is an engine name and was restored; use another variable name")
        answer = self.ns.get("answer")
        content, ready, problem = _plain_answer(answer, self.limits.answer_chars)
        if problem is not None:  # no method of the cell's objects is called here (no timer runs)
            self.ns["answer"] = {"content": content, "ready": ready}
            notices.append(problem)
        else:
            dict.setdefault(answer, "content", "")
            dict.setdefault(answer, "ready", False)
        return notices

    # -- surviving a worker restart ------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The user variables that can be rebuilt exactly, within the snapshot budget."""
        budget = self.limits.snapshot_chars
        saved: dict[str, Any] = {}
        for name, value in self.user_variables().items():
            with contextlib.suppress(NotPlain, RecursionError, MemoryError, ValueError):
                saved[name], size = encode(value, budget)
                budget -= size
        return saved

    def restore(self, replay: list[str], snapshot: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """Rebuild state in a fresh worker: re-run imports and definitions, then plain variables."""
        failed = 0
        timed_out = False
        for index, source in enumerate(replay):
            compiled = compile_cell(source, f"<restore {index}>")
            self.running = self.restoring = True
            try:
                if compiled.code is None:
                    raise PolicyError(compiled.error)
                exec(compiled.code, self.ns)
            except CellTimeout:  # out of restore time: the rest is skipped, not waited for
                failed += len(replay) - index
                timed_out = True
                break
            except BaseException:  # a definition that no longer runs is reported, not fatal
                failed += 1
            finally:
                self.running = self.restoring = False
        for name, data in snapshot.items():
            if name.isidentifier() and not name.startswith("_") and name not in self.engine:
                with contextlib.suppress(Exception):  # a value that cannot be rebuilt is reported lost
                    self.ns[name] = decode(data, self.stores)
        self._restore_engine_names()
        for name in set(self.user_variables()) - set(names):
            del self.ns[name]
        lost = sorted(set(names) - set(self.user_variables()))
        return {"op": "restored", "lost": lost, "failed": failed, "timed_out": timed_out}


def _plain_answer(answer: Any, cap: int) -> tuple[str, bool, str | None]:
    """(content, ready, problem) of the cell's `answer`, calling no method of the cell's objects:
    `answer` must be an exact dict with exact str keys, 'content' a str (an int or float is
    written out) of at most `cap` characters, 'ready' a bool; else `problem` says what was reset."""
    reset = "`answer` must stay a dict with 'content' (a str) and 'ready' (a bool); it was reset"
    if type(answer) is not dict or any(type(key) is not str for key in answer):
        return "", False, reset
    content, ready = dict.get(answer, "content", ""), dict.get(answer, "ready", False)
    if type(ready) is not bool:
        return "", False, reset
    if type(content) in (int, float):
        try:
            content = repr(content)
        except ValueError:  # an int too long to write out
            return "", False, reset
    if type(content) is not str:
        return "", False, reset
    if len(content) > cap:
        dict.__setitem__(answer, "content", content[:cap])
        return content[:cap], ready, f"answer['content'] was cut to its first {cap:,} characters"
    return content, ready, None


def _compile_plain(code: str, filename: str) -> CompiledCell:
    """A cell compiled as plain Python, with no policy at all (tests of the OS layer alone)."""
    try:
        return CompiledCell(compile(code, filename, "exec"))
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return CompiledCell(None, f"{type(exc).__name__}: {exc}")


def _is_engine_stop(exc: BaseException) -> bool:
    """A stop the engine raised: its exact type with at most one text (str() of which copies nothing),
    not a subclass or a message of the cell's making."""
    if type(exc) not in (CellTimeout, CellCpuLimit, CellCancelled):
        return False
    return exc.args == () or (len(exc.args) == 1 and type(exc.args[0]) is str)


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, PolicyError):
        return "policy"
    if isinstance(exc, CellCpuLimit):
        return "cpu"
    if isinstance(exc, CellTimeout):
        return "timeout"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OutputFlood):
        return "output"
    return "exception"
