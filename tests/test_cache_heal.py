"""The response cache never costs a run: a broken one is reported, kept aside and replaced, and past its
size limit it keeps the replies used most recently."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rlm.models.cache import ResponseCache
from rlm.scripted import ScriptedServer
from rlm.types import Completion
from tests.test_cli import RLM_COMMAND, clean_env, query_args

GARBAGE = os.urandom(64 * 1024)


def break_store(directory: Path, store: str = "responses") -> None:
    (directory / store / "cache.db").write_bytes(GARBAGE)


def test_a_corrupt_store_is_moved_aside_and_replaced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ResponseCache(tmp_path).close()
    break_store(tmp_path)
    break_store(tmp_path, "stats")
    cache = ResponseCache(tmp_path)
    warned = capsys.readouterr().err
    assert warned.count("was unreadable") == 2 and "moved it to" in warned
    kept = sorted(path.name for path in tmp_path.glob("*.broken-*"))
    assert [name.split(".")[0] for name in kept] == ["responses", "stats"]
    assert (tmp_path / kept[0] / "cache.db").read_bytes() == GARBAGE  # kept as it was
    cache.put("k", Completion("hello", "m"))
    assert cache.get("k") is not None and cache.stats().hits == 1
    cache.close()


def test_a_store_broken_while_open_is_healed_at_the_next_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = ResponseCache(tmp_path)
    cache.put("k", Completion("hello", "m"))
    break_store(tmp_path)
    assert cache.stats().entries == 0  # a broken store counts nothing
    assert capsys.readouterr().err.count("was unreadable") == 1
    cache.put("k", Completion("again", "m"))
    assert cache.get("k", count=False).text == "again"
    cache.close()


def test_a_cache_that_cannot_be_replaced_is_done_without(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    cache = ResponseCache(blocked)
    assert "going on without it" in capsys.readouterr().err
    cache.put("k", Completion("hello", "m"))
    assert cache.get("k") is None and cache.stats().entries == 0 and cache.clear() == 0
    cache.close()


def run_cached(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`rlm ARGS` with the response cache on, in tmp_path/cache."""
    env = clean_env(tmp_path) | {"RLM_CACHE": "true", "RLM_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(RLM_COMMAND + args, capture_output=True, text=True, env=env, timeout=120)


def cached_query(server: ScriptedServer, tmp_path: Path) -> subprocess.CompletedProcess:
    server.script("test-root", ["```repl\nFINAL('forty-two')\n```"])
    return run_cached(query_args(server, tmp_path), tmp_path)


def test_rlm_query_and_cache_commands_on_a_garbage_cache(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    assert cached_query(scripted_server, tmp_path).returncode == 0
    break_store(tmp_path / "cache")
    done = cached_query(scripted_server, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "forty-two\n"
    assert done.stderr.count("was unreadable") == 1 and "Traceback" not in done.stderr
    assert len(list((tmp_path / "cache").glob("responses.broken-*"))) == 1

    break_store(tmp_path / "cache")
    stats = run_cached(["cache", "stats"], tmp_path)
    assert stats.returncode == 0 and "0 replies" in stats.stdout and "was unreadable" in stats.stderr
    break_store(tmp_path / "cache")
    info = run_cached(["cache", "info"], tmp_path)
    assert info.returncode == 0 and "0 replies" in info.stdout and "was unreadable" in info.stderr
    assert cached_query(scripted_server, tmp_path).returncode == 0  # stored again in the new store
    break_store(tmp_path / "cache")
    cleared = run_cached(["cache", "clear"], tmp_path)
    assert cleared.returncode == 0, cleared.stderr
    assert "removed 0 cached replies" in cleared.stdout and "was unreadable" in cleared.stderr


def test_past_its_size_limit_the_cache_keeps_the_most_recently_used(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path, size_limit=1 << 20)
    reply = "x" * 100_000  # about ten fit in the limit
    for i in range(30):
        cache.get("k0")  # k0 stays in use all along
        cache.put(f"k{i}", Completion(f"{i}:{reply}", "m"))
    survivors = [i for i in range(30) if cache.get(f"k{i}", count=False) is not None]
    print("replies kept of 30 (k0 read before every write):", survivors)
    assert survivors == [0, *range(21, 30)]
    assert cache.stats().size_bytes <= 1 << 20
    cache.close()
