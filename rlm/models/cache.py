"""A persistent response cache on diskcache, shared by every task and process that uses the directory.

Keyed by model, base URL, messages and sampling parameters (never the API key). Calls that set a
temperature above 0 are cached only with `cache_sampled`: their replies are meant to vary. Calls that
set no temperature are cached: rlm sends none by default, and a re-run must cost nothing.

diskcache keeps entries in SQLite with atomic transactions, so concurrent tasks and processes can read
and write one directory; past `size_limit` bytes each write evicts the least recently used reply, so
the most recently used ones stay. Hit, miss and saved-cost counters live in a separate, never-evicted
store next to it and are updated atomically.

A cache must never cost a run: a store found corrupt or unreadable is reported once on stderr, moved
aside (kept for a post-mortem, `<store>.broken-<time>-<pid>`) and replaced by an empty one; if even
that fails the run goes on without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from rlm.config import DEFAULTS
from rlm.models.provider import Endpoint
from rlm.types import Completion, Usage

KEY_VERSION = 1  # bump when the key or the stored value changes shape
NANO = 1_000_000_000  # saved cost is counted in nano-dollars: diskcache increments integers
STORE_ERRORS = (sqlite3.Error, OSError)
T = TypeVar("T")


def default_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rlm"


@dataclass(frozen=True)
class CacheStats:
    directory: str
    entries: int
    size_bytes: int
    hits: int
    misses: int
    saved_usd: float

    def describe(self) -> str:
        total = self.hits + self.misses
        rate = f" ({self.hits / total:.0%} hit rate)" if total else ""
        return (
            f"{self.directory}: {self.entries:,} replies, {self.size_bytes / 1e6:.1f} MB; "
            f"{self.hits:,} hits, {self.misses:,} misses{rate}; ${self.saved_usd:.4f} saved"
        )


@dataclass(frozen=True)
class CachedReply:
    """A stored reply. `complete` is False for the prefix of a stream its consumer stopped reading
    (the engine closes the root stream at the answer): a replay serves the prefix, then goes live."""

    text: str
    usage: Usage
    complete: bool


class _HealingStore:
    """One diskcache store that, found broken, is moved aside and replaced (None: working without it)."""

    def __init__(self, path: Path, **options: Any) -> None:
        self.path = path
        self.options = options
        self.store: diskcache.Cache | None = None
        self._skipped = False  # an operation failed without the store being broken (said once)
        self._opened = self._identity()
        try:
            self.store = diskcache.Cache(str(path), **options)
            self._opened = self._identity()
        except STORE_ERRORS as error:
            self._replace(error)

    def _identity(self) -> tuple[int, int] | None:
        """Which database file is at the path now (another process may have replaced a broken one)."""
        try:
            found = (self.path / "cache.db").stat()
        except OSError:
            return None
        return found.st_dev, found.st_ino

    def run(self, operation: Callable[[diskcache.Cache], T], default: T) -> T:
        """`operation` on the store; `default` when there is none or it fails (a broken one is healed)."""
        if self.store is None:
            return default
        try:
            return operation(self.store)
        except (*STORE_ERRORS, diskcache.Timeout) as error:
            if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError):
                self._replace(error)  # the file is not a database (any more)
            elif not self._skipped:  # busy, disk full, permissions: the store is fine, this call goes without
                self._skipped = True
                _warn(f"the response cache at {self.path} failed ({error}); calls it cannot serve go to the provider.")
            return default

    def _replace(self, error: Exception) -> None:
        if self.store is not None:
            with contextlib.suppress(*STORE_ERRORS):  # a broken store may fail to close too
                self.store.close()
            self.store = None
        now = self._identity()
        if now is not None and now != self._opened:  # another process replaced it meanwhile
            self._opened = now
            with contextlib.suppress(*STORE_ERRORS):
                self.store = diskcache.Cache(str(self.path), **self.options)
                return
        aside = self.path.with_name(f"{self.path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        try:
            self.path.rename(aside)
            self.store = diskcache.Cache(str(self.path), **self.options)
            self._opened = self._identity()
        except STORE_ERRORS as failure:
            _warn(
                f"the response cache at {self.path} is unreadable ({error}) and could not be replaced "
                f"({failure}); going on without it."
            )
            return
        _warn(
            f"the response cache at {self.path} was unreadable ({error}); moved it to {aside} and started an empty one."
        )

    def close(self) -> None:
        self.run(lambda store: store.close(), None)


def _warn(message: str) -> None:
    print(f"rlm: {message}", file=sys.stderr, flush=True)


class ResponseCache:
    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        size_limit: int = DEFAULTS.cache.size_mb << 20,
        cache_sampled: bool = DEFAULTS.cache.sampled,
    ) -> None:
        self.directory = self.location(directory)
        self.cache_sampled = cache_sampled
        self._replies = _HealingStore(
            self.directory / "responses",
            size_limit=size_limit,
            eviction_policy="least-recently-used",
            cull_limit=1,  # diskcache's default drops the 10 least recent at once, some still wanted
        )
        self._counters = _HealingStore(self.directory / "stats", eviction_policy="none")

    @staticmethod
    def location(directory: str | Path | None = None) -> Path:
        return Path(directory) if directory else default_directory()

    @staticmethod
    def exists(directory: str | Path | None = None) -> bool:
        """Whether a cache was ever opened in `directory` (looking does not create it)."""
        return (ResponseCache.location(directory) / "responses").is_dir()

    def key(self, endpoint: Endpoint, messages: list[dict[str, Any]]) -> str | None:
        """The entry's key, or None when this call must not be cached (sampled, not asked to)."""
        temperature = endpoint.params.get("temperature")
        if temperature and temperature > 0 and not self.cache_sampled:
            return None
        material = {
            "v": KEY_VERSION,
            "model": endpoint.model,
            "api_base": endpoint.api_base,
            "params": endpoint.params,
            "messages": messages,
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str, *, count: bool = True) -> CachedReply | None:
        """The stored reply, counted as a hit or a miss unless `count` is False (see `count`)."""
        value = self._replies.run(lambda store: store.get(key), None)
        if value is None:
            if count:
                self.count(None)
            return None
        usage = Usage(value["prompt_tokens"], value["completion_tokens"], value["cost_usd"], value["priced"], calls=1)
        if count:
            self.count(usage)
        return CachedReply(value["text"], usage, value["complete"])

    def count(self, hit: Usage | None) -> None:
        """Count one call answered without the provider (`hit`: the reply's usage, saved) or a miss."""
        if hit is None:
            self._counters.run(lambda store: store.incr("misses", 1, default=0), 0)
            return
        saved = round(hit.cost_usd * NANO)
        self._counters.run(lambda store: store.incr("hits", 1, default=0), 0)
        self._counters.run(lambda store: store.incr("saved_nano_usd", saved, default=0), 0)

    def put(self, key: str, completion: Completion, *, complete: bool = True) -> None:
        """Store a reply; a partial one never replaces a complete one or a longer prefix."""
        if not complete:
            existing = self._replies.run(lambda store: store.get(key), None)
            if existing is not None and (existing["complete"] or len(existing["text"]) >= len(completion.text)):
                return
        usage = completion.usage
        value = {
            "text": completion.text,
            "model": completion.model,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cost_usd": usage.cost_usd,
            "priced": usage.priced,
            "complete": complete,
        }
        self._replies.run(lambda store: store.set(key, value), False)

    def stats(self) -> CacheStats:
        return CacheStats(
            directory=str(self.directory),
            entries=self._replies.run(len, 0),
            size_bytes=self._replies.run(lambda store: store.volume(), 0),
            hits=int(self._counters.run(lambda store: store.get("hits", 0), 0)),
            misses=int(self._counters.run(lambda store: store.get("misses", 0), 0)),
            saved_usd=int(self._counters.run(lambda store: store.get("saved_nano_usd", 0), 0)) / NANO,
        )

    def clear(self) -> int:
        """Remove every reply and reset the counters; returns how many replies were removed."""
        removed = self._replies.run(lambda store: store.clear(), 0)
        self._counters.run(lambda store: store.clear(), 0)
        return removed

    def close(self) -> None:
        self._replies.close()
        self._counters.close()
