"""A loader for the published OOLONG files (oolongbench/oolong-synth and -real exports), for users who
have them locally. Records carry `context_window_text`, `question` and `answer` (often a stringified
list such as "['entity']"), plus `id`, `dataset`, `context_len`, `task_group`, `task` and `answer_type`.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlm_datasets.task import Task

from rlm.errors import ConfigError

SUFFIXES = (".jsonl", ".json", ".parquet")


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            yield from (json.loads(line) for line in f if line.strip())
    elif path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        yield from data if isinstance(data, list) else data.get("data", data.get("rows", []))
    elif path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ConfigError(f"reading {path} needs pyarrow (pip install pyarrow), or convert it to JSONL") from e
        yield from pq.read_table(path).to_pylist()
    else:
        raise ConfigError(f"{path}: expected one of {', '.join(SUFFIXES)}")


def answer_type(raw: str | None) -> str:
    """Map the published answer_type (e.g. 'ANSWER_TYPE.NUMERIC') onto our scorer names."""
    kind = (raw or "").upper()
    if "NUM" in kind:
        return "number"
    if "COMPAR" in kind:
        return "comparison"
    if "USER" in kind:
        return "user"
    if "DATE" in kind:  # the official scorer parses only these as dates; month-year answers match exactly
        return "date"
    return "label"


_DATE_GOLD = re.compile(r"^\[?\s*datetime\.date\(\s*(\d{4})\s*,\s*(\d{1,2})\s*,\s*(\d{1,2})\s*\)\s*\]?$")


def parse_answer(raw: Any) -> Any:
    """Unwrap "['x']" / "[3]" / ["x"] into the gold value the official scorer uses (the first); others pass through.

    Date golds are published as "[datetime.date(2023, 3, 5)]", which is not a literal: they become the ISO
    date "2023-03-05", which the scorer reads back as that date.
    """
    value = raw
    if isinstance(raw, str) and (m := _DATE_GOLD.match(raw.strip())):
        return dt.date(int(m[1]), int(m[2]), int(m[3])).isoformat()
    if isinstance(raw, str) and raw.strip().startswith("["):
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip().strip("[]").strip("'\"")
    if isinstance(value, list | tuple) and value:
        value = value[0]  # a tie lists several golds; the official scorer compares with the first only
    return value


def load_oolong_file(
    path: str | Path,
    *,
    dataset: str | None = None,
    context_len: int | None = None,
    n: int | None = None,
    with_labels: bool = False,
) -> list[Task]:
    """Tasks from a published OOLONG file, optionally filtered by source dataset and window length."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"OOLONG file not found: {path}")
    field = "context_window_text_with_labels" if with_labels else "context_window_text"
    tasks: list[Task] = []
    for row in _rows(path):
        if dataset and row.get("dataset") != dataset:
            continue
        if context_len and int(row.get("context_len") or 0) != context_len:
            continue
        if field not in row or "question" not in row or "answer" not in row:
            raise ConfigError(f"{path}: record {row.get('id')!r} lacks {field}, question or answer")
        kind = answer_type(row.get("answer_type"))
        gold = parse_answer(row["answer"])
        if kind == "number":
            gold = float(gold)
        tasks.append(
            Task(
                id=f"oolong-file-{row.get('id', len(tasks))}",
                suite="oolong-file",
                context=row[field],
                question=row["question"],
                gold=gold,
                meta={
                    "answer_type": kind,
                    "family": row.get("task_group"),
                    "task": row.get("task"),
                    "dataset": row.get("dataset"),
                    "length": row.get("context_len"),
                },
            )
        )
        if n is not None and len(tasks) >= n:
            break
    return tasks
