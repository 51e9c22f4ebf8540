"""The sandbox's fork server (rlm/forkserver.py): a clean Python process that has imported everything a
REPL worker needs, once, so a worker starts as a fork. It runs isolated (python -I), with a scrubbed
environment (no API keys) and its output discarded; the host asks it for each worker with a status
socket, so a session can say how a dead worker ended.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import threading
from typing import Any

from rlm.forkserver import ForkServer, Spawned, command, serve


def main(fd: int) -> None:
    """The entry of the zygote process: warm up, freeze the warm heap (shared by every forked worker),
    then fork one worker per request until the host hangs up."""
    from sandbox import worker
    from sandbox.modules import preload

    _warm(preload)
    gc.freeze()
    serve(fd, worker.serve)


def _warm(preload: object) -> None:
    import datetime

    from sandbox import repl

    preload()  # type: ignore[operator]
    datetime.datetime.strptime("2024-01-02", "%Y-%m-%d").strftime("%A %B")  # imports _strptime, time
    repl.namespace_extras()
    with contextlib.suppress(ImportError):
        import rlm.context  # noqa: F401
    _load_encodings()
    _load_codecs()


def _load_codecs() -> None:
    """Import every text codec now (~75 ms, 5 MB, shared): `s.encode('cp1252')` imports its codec on
    first use, and a worker may open no file."""
    import codecs
    import encodings
    import pkgutil

    for module in pkgutil.iter_modules(encodings.__path__):
        with contextlib.suppress(Exception):  # codecs of other platforms (mbcs, oem) do not load
            codecs.lookup(module.name)


REPL_ENCODINGS = ("cl100k_base", "o200k_base")


def _load_encodings() -> None:
    """Make the tokenizers cells may use (count_tokens, chunk_tokens) available from the offline files,
    and refuse any other: a worker may open no file and reach no network (sandbox/oslayer.py), so
    tiktoken must never try to read or download one there. The default one is built here, shared by
    every worker; the others (~0.4 s to build) from their bytes, in a worker that asks for them."""
    try:
        from rlm import tokens
    except ImportError:
        return
    files = {name: data for name in REPL_ENCODINGS if (data := tokens.bundled_file(name)) is not None}
    default = tokens.DEFAULT_ENCODING
    if default in files:
        tokens._encodings[default] = tokens.build(default, files[default])

    def from_memory(name: str) -> Any:
        if name in files:
            return tokens.build(name, files[name])
        have = ", ".join(repr(n) for n in files) or "none"
        raise ValueError(f"the tokenizer {name!r} is not available in the REPL (available: {have})")

    tokens._load = from_memory


def _clean_env() -> dict[str, str]:
    return {"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


_zygote: ForkServer | None = None
_zygote_pid = 0
_zygote_lock = threading.Lock()


def _start() -> ForkServer:
    argv = command("sandbox.zygote:main", isolated=True)
    return ForkServer(argv, name="sandbox zygote", env=_clean_env(), cwd="/", quiet=True)


def _current_zygote() -> ForkServer:
    global _zygote, _zygote_pid
    with _zygote_lock:
        if _zygote is None or _zygote_pid != os.getpid() or not _zygote.alive():
            _zygote, _zygote_pid = _start(), os.getpid()
        return _zygote


def prestart() -> None:
    """Start this process's zygote now without waiting for it: it boots while the caller imports and
    sends its first request, so the first session opens at once."""
    _current_zygote()


def spawn_worker() -> Spawned:
    """Fork a worker from this process's zygote, starting (or restarting) the zygote if needed."""
    global _zygote
    zygote = _current_zygote()
    try:
        return zygote.spawn(report_end=True)
    except (ConnectionError, OSError):
        with _zygote_lock:
            if _zygote is zygote:
                _zygote = None
        return _current_zygote().spawn(report_end=True)


@atexit.register
def _shutdown() -> None:
    if _zygote is not None and _zygote_pid == os.getpid():
        _zygote.close(wait=False)
