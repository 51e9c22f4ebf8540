"""An OOLONG-synth window: its official size, label mix, users and dates, and its text (the rules are in
the package docstring)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, timedelta

from rlm_datasets.pools import Pool, load_pool

FILL = 0.95
QUESTION_TOKENS = 250
SIZING = {"trec_coarse": (168, 39), "spam": (142, 57)}  # the official PROMPT_TOKENS, PER_EXAMPLE_TOKENS
FIRST_DAY, LAST_DAY = date(2022, 2, 16), date(2025, 6, 21)


@dataclass(frozen=True)
class Record:
    """One line of a window; `label` is hidden from the text."""

    day: date
    user: str
    text: str
    label: str

    def line(self) -> str:
        return f"Date: {format_date(self.day)} || User: {self.user} || Instance: {self.text}"


@dataclass
class Window:
    """A generated context window: its records, rendered text, label order and how many lines repeat."""

    pool: Pool
    length: int
    labels: list[str]
    records: list[Record]
    text: str
    repeated: float = 0.0


def format_date(day: date) -> str:
    return day.strftime("%b %d, %Y")


def n_instances(pool_name: str, length: int) -> int:
    """The official window size in instances for a nominal length in tokens."""
    prompt, per_example = SIZING[pool_name]
    return max(int((length * FILL - prompt - QUESTION_TOKENS) // per_example), 1)


def describe(pool_name: str, n: int, labels: list[str], intro: bool) -> str:
    """The dataset description the official prompt puts before (intro) and after the lines."""
    if pool_name == "spam":
        what = "text messages, one per line. Each text message can be classified as spam or ham (i.e., not spam)."
    else:
        quoted = ", ".join(f"'{label}'" for label in labels)
        what = (
            "general-knowledge questions, one per line. Each question has an answer that can be described as "
            f"one of {len(labels)} categories: {quoted}."
        )
    start = "The following" if intro else "Recall: the preceding"
    return (
        f"{start} lines contain {n} {what}\n\nYou will be asked to answer questions about the aggregate label "
        f"statistics across all {n} examples in this dataset. Do not try to guess, estimate, or approximate the "
        "result. Calculate the exact answer given these datapoints.\n\n"
    )


def label_counts(labels: list[str], n: int, rng: random.Random) -> list[int]:
    """How many instances of each label: the official tempered softmax over randint(1, 30) weights."""
    temperature = rng.randint(2, 6)
    weights = [rng.randint(1, 30) ** (1 / temperature) for _ in labels]
    top = max(weights)
    exps = [math.exp(w - top) for w in weights]
    counts = [round(e / sum(exps) * n) for e in exps]
    counts[0] -= sum(counts) - n
    return [max(c, 0) for c in counts]


def _users(n: int, rng: random.Random) -> list[str]:
    common = rng.sample(range(10000, 100000), max(int(n * 0.1), 1))
    taken = set(common)
    out = []
    for _ in range(n):
        if rng.random() < 0.8:
            out.append(rng.choice(common))
        else:
            while (uid := rng.randrange(10000, 100000)) in taken:
                pass
            out.append(uid)
    return [str(u) for u in out]


def build_window(pool_name: str, length: int, rng: random.Random) -> Window:
    """A window of the official size, label mix, users and dates (see the module docstring)."""
    pool = load_pool(pool_name)
    labels = list(pool.labels)
    rng.shuffle(labels)
    n = n_instances(pool_name, length)
    by_label = pool.indices_by_label()
    picks: list[int] = []
    for label, count in zip(labels, label_counts(labels, n, rng), strict=True):
        have = by_label[label]
        if count <= 0 or not have:
            continue
        candidates = have * math.ceil(count / len(have))  # copies only when the pool runs short
        rng.shuffle(candidates)
        picks.extend(candidates[:count])
    rng.shuffle(picks)
    users = _users(len(picks), rng)
    span = (LAST_DAY - FIRST_DAY).days
    records = [
        Record(FIRST_DAY + timedelta(days=rng.randint(0, span)), user, pool.texts[i], pool.gold[i])
        for i, user in zip(picks, users, strict=True)
    ]
    body = "".join(r.line() + "\n" for r in records)
    text = describe(pool_name, len(records), labels, True) + body + describe(pool_name, len(records), labels, False)
    repeated = 1 - len(set(picks)) / len(picks) if picks else 0.0
    return Window(pool, length, labels, records, text, repeated)
