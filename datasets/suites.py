"""`load_suite`: one entry point from a suite name to a list of tasks (what `rlm bench` calls)."""

from __future__ import annotations

from pathlib import Path

from rlm_datasets.oolong import oolong_tasks
from rlm_datasets.pairs import pairs_tasks
from rlm_datasets.published import SUFFIXES, load_oolong_file
from rlm_datasets.sniah import FIXED_LENGTH, LENGTHS, sniah_tasks
from rlm_datasets.task import Task

from rlm.errors import ConfigError

OOLONG_LENGTHS = (8192, 16384, 32768, 65536, 131072)
MIN_LENGTH = 1024  # tokens; smaller windows hold too few records for the questions (or a needle)
MAX_LENGTH = 1_048_576
SUITES = {
    "oolong": "OOLONG-synth trec_coarse (131K tokens, 50 questions by default)",
    "oolong-trec_coarse": "same as oolong",
    "oolong-spam": "OOLONG-synth over the spam pool (2 labels)",
    "oolong-pairs": "the 20 OOLONG-Pairs queries over a ~32K-token trec_coarse window",
    "sniah": "RULER niah_single_2 (essay haystack, 7-digit value), cycling 8K..256K tokens (50 tasks by default)",
    "sniah-noise": "RULER niah_single_1 (repeated noise haystack, 7-digit value), cycling 8K..256K tokens",
    "sniah-uuid": "RULER niah_single_3 (essay haystack, UUID value), cycling 8K..256K tokens",
    "sniah-80k": "RULER niah_single_2 at a fixed 80K tokens",
}
_SNIAH_VARIANTS = {"sniah": "essay", "sniah-noise": "noise", "sniah-uuid": "essay-uuid"}
_NAMED_LENGTHS = {
    "8k": 8192,
    "16k": 16384,
    "32k": 32768,
    "64k": 65536,
    "128k": 131072,
    "131k": 131072,
    "256k": 262144,
    "80k": 80000,
}


def parse_length(length: int | str | None) -> int | None:
    """Accept 131072, '131072', '131K' or '7k': K is 1024 tokens, as in the papers' 8K..256K; 131K is their
    name for 128K, and 80K is the papers' fixed 80,000-token needle length."""
    if length is None or isinstance(length, int):
        return length
    text = length.strip().lower()
    if text in _NAMED_LENGTHS:
        return _NAMED_LENGTHS[text]
    try:
        return int(text[:-1]) * 1024 if text.endswith("k") else int(text)
    except ValueError as e:
        raise ConfigError(f"bad length {length!r}; use a token count such as 32768 or 32K") from e


def load_suite(name: str, n: int | None = None, length: int | str | None = None, seed: int = 0) -> list[Task]:
    """Deterministic tasks of suite `name` (or of a published OOLONG file, if `name` is its path)."""
    size = parse_length(length)
    if n is not None and n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if name.endswith(SUFFIXES) or Path(name).is_file():
        return load_oolong_file(name, context_len=size, n=n)
    if size is not None and not MIN_LENGTH <= size <= MAX_LENGTH:
        raise ConfigError(
            f"--length {size} is out of range; generated suites take {MIN_LENGTH} to {MAX_LENGTH} tokens (e.g. 32K)"
        )
    if name in ("oolong", "oolong-trec_coarse", "oolong-spam"):
        pool = "spam" if name == "oolong-spam" else "trec_coarse"
        return oolong_tasks(name, pool, n or 50, size or 131072, seed)
    if name == "oolong-pairs":
        return pairs_tasks(name, n or 20, size or 32768, seed)
    if name in _SNIAH_VARIANTS:
        return sniah_tasks(name, n or 50, (size,) if size else LENGTHS, seed, _SNIAH_VARIANTS[name])
    if name == "sniah-80k":
        if size not in (None, FIXED_LENGTH):
            raise ConfigError(f"sniah-80k is fixed at {FIXED_LENGTH} tokens; use the sniah suite for {size}")
        return sniah_tasks(name, n or 50, (FIXED_LENGTH,), seed)
    raise ConfigError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)} or give an OOLONG file path")
