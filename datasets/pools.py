"""The validated OOLONG source pools (labelled instances), loaded once and token-counted once.

Counting each instance a single time is what makes building a 131K-token window cheap: a window's size
is the sum of cached per-instance counts plus a fixed per-line overhead.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rlm.errors import ConfigError
from rlm.tokens import count_tokens

DATA_ENV = "RLM_OOLONG_DATA"
_PACKAGED_DIR = Path(__file__).resolve().parent / "data"  # gzip-compressed; see data/SOURCE.md

# What a single instance is, in words, and the label set in the order questions list them.
POOL_INFO: dict[str, tuple[str, tuple[str, ...]]] = {
    "trec_coarse": (
        "question",
        (
            "description and abstract concept",
            "entity",
            "human being",
            "numeric value",
            "location",
            "abbreviation",
        ),
    ),
    "spam": ("SMS message", ("ham", "spam")),
}


@dataclass(frozen=True)
class Pool:
    """Instances of one source dataset: texts, their gold labels and their token counts."""

    name: str
    kind: str
    labels: tuple[str, ...]
    texts: tuple[str, ...]
    gold: tuple[str, ...]
    tokens: tuple[int, ...]

    def indices_by_label(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {label: [] for label in self.labels}
        for i, label in enumerate(self.gold):
            out[label].append(i)
        return out


def pool_path(name: str) -> Path:
    """Where a pool lives: `<name>_validated.jsonl` under `$RLM_OOLONG_DATA`, else the copy shipped inside rlm."""
    folder = os.environ.get(DATA_ENV)
    if folder:
        return Path(folder) / f"{name}_validated.jsonl"
    return _PACKAGED_DIR / f"{name}_validated.jsonl.gz"


@cache
def load_pool(name: str) -> Pool:
    """Read a pool (plain or gzip JSONL); one instance per line, newlines inside a text become spaces."""
    if name not in POOL_INFO:
        raise ConfigError(f"unknown OOLONG pool {name!r}; choose one of {sorted(POOL_INFO)}")
    path = pool_path(name)
    if not path.is_file():
        hint = f"${DATA_ENV} names a folder without it" if os.environ.get(DATA_ENV) else "reinstall rlm"
        raise ConfigError(f"OOLONG pool not found at {path}; {hint}")
    kind, labels = POOL_INFO[name]
    texts: list[str] = []
    gold: list[str] = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            text = " ".join(row["input"].split())
            if text and row["label"] in labels:
                texts.append(text)
                gold.append(row["label"])
    tokens = tuple(count_tokens(t) for t in texts)
    return Pool(name, kind, labels, tuple(texts), tuple(gold), tokens)
