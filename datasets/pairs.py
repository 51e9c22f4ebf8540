"""OOLONG-Pairs: the 20 pair queries of the RLM paper (arXiv 2512.24601, appendix D.1) over trec_coarse windows.

"we synthetically generate 20 new tasks based on the ground-truth labels for the OOLONG (Bertsch et al.,
2025) trec_coarse split" (D.1): each query asks for every pair of user IDs that meets a condition on the
users' hidden labels, so the answer grows with the square of the number of users. Queries 1-10 put the
same condition on both users (4, 5, 7, 9 and 10 with a date rule); queries 11-20 put one condition on one
user and another on the other. The conditions are data below; the question text is built from them in
the paper's wording, and so is the gold set. The windows are the OOLONG-synth ones (rlm_datasets.oolong);
at 32K a trec_coarse window holds 787 instances, as the paper's published 32K window does.

Two rules the paper leaves open, and what this module chooses:

* A date rule such as "all instances that are a human being for both users must be after January 6, 2023"
  on a user with no instance of that label: the rule holds (nothing violates "all instances ... must
  be"), so that user still qualifies through the other label of "at least one instance with a human
  being or location". "After" and "before" are strict: an instance dated on the day itself breaks it.
* A query whose gold is empty: an answer with no pair scores 1 and any listed pair scores 0
  (`rlm_datasets.scoring.score_pairs`); the paper scores Pairs by F1, which is undefined there.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from itertools import combinations

from rlm_datasets.oolong.windows import Record, build_window
from rlm_datasets.pools import POOL_INFO
from rlm_datasets.task import Task

DESC, ENTY, HUM, NUM, LOC, ABBR = POOL_INFO["trec_coarse"][1]
_NUMBER_WORDS = {1: "one", 2: "two"}


def _article(label: str) -> str:
    return f"{'an' if label[0] in 'aeiou' else 'a'} {label}"


def _series(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b, and c', as the paper lists a user's requirements."""
    return (
        parts[0]
        if len(parts) == 1
        else " and ".join(parts)
        if len(parts) == 2
        else ", ".join(parts[:-1]) + ", and " + parts[-1]
    )


@dataclass(frozen=True)
class Need:
    """A count requirement on one label: at least / exactly `k` instances."""

    label: str
    k: int = 1
    exact: bool = False

    def holds(self, counts: Counter[str]) -> bool:
        return counts[self.label] == self.k if self.exact else counts[self.label] >= self.k

    def words(self) -> str:
        amount = f"{'exactly' if self.exact else 'at least'} {_NUMBER_WORDS[self.k]}"
        return f"{amount} instance{'s' if self.k > 1 else ''} with {self.label}"


@dataclass(frozen=True)
class DateRule:
    """Every instance of `label` a user has must fall strictly before/after `day` (vacuous if none)."""

    label: str
    after: bool
    day: date

    def holds(self, records: list[Record]) -> bool:
        days = [r.day for r in records if r.label == self.label]
        return all(d > self.day for d in days) if self.after else all(d < self.day for d in days)

    def words(self) -> str:
        side = "after" if self.after else "before"
        when = f"{self.day.strftime('%B')} {self.day.day}, {self.day.year}"
        return f"all instances that are {_article(self.label)} for both users must be {side} {when}"


@dataclass(frozen=True)
class Condition:
    """What one user must satisfy: some label among `any_of`, every `Need`, and the date rule."""

    any_of: tuple[str, ...] = ()
    needs: tuple[Need, ...] = ()
    rule: DateRule | None = None
    paper_words: str | None = None  # the paper's own phrasing where it departs from the regular one

    def holds(self, records: list[Record]) -> bool:
        counts = Counter(r.label for r in records)
        if self.any_of and not any(counts[label] for label in self.any_of):
            return False
        if not all(n.holds(counts) for n in self.needs):
            return False
        return self.rule is None or self.rule.holds(records)

    def words(self) -> str:
        if self.paper_words:
            return self.paper_words
        if self.any_of:
            first, *rest = self.any_of
            text = "at least one instance with " + " or ".join([_article(first), *rest])
            return f"{text}, and {self.rule.words()}" if self.rule else text
        return _series([n.words() for n in self.needs])


_SUFFIX = (
    "Each of the questions can be labelled as one of the labels (the data does not provide the labels, you need "
    "to figure out the label from the semantics of the question): {labels}. In your answer, list all pairs in "
    "the format (user_id_1, user_id_2), separated by newlines."
)


@dataclass(frozen=True)
class PairQuery:
    """`other` is None for a symmetric query (both users meet `one`)."""

    one: Condition
    other: Condition | None = field(default=None)

    def question(self) -> str:
        if self.other is None:
            cond = f"where both users have {self.one.words()}"
        else:
            cond = f"such that one user has {self.one.words()}, and the other user has {self.other.words()}"
        labels = ", ".join([DESC, ENTY, HUM, NUM, LOC, ABBR])
        return (
            f"In the above data, list all pairs of user IDs (no duplicate pairs, list lower ID first) {cond}. "
            + _SUFFIX.format(labels=labels)
        )

    def gold(self, by_user: dict[str, list[Record]]) -> list[list[str]]:
        users = sorted(by_user, key=int)
        ok_one = {u for u in users if self.one.holds(by_user[u])}
        if self.other is None:
            return [[a, b] for a, b in combinations(sorted(ok_one, key=int), 2)]
        ok_other = {u for u in users if self.other.holds(by_user[u])}
        return [
            [a, b]
            for a, b in combinations(users, 2)
            if (a in ok_one and b in ok_other) or (b in ok_one and a in ok_other)
        ]


def _any(*labels: str, rule: DateRule | None = None) -> Condition:
    return Condition(any_of=labels, rule=rule)


def _all(*needs: Need) -> Condition:
    return Condition(needs=needs)


QUERIES: tuple[PairQuery, ...] = (
    PairQuery(_any(NUM, LOC)),
    PairQuery(_any(ENTY, HUM)),
    PairQuery(_any(DESC, ABBR)),
    PairQuery(_any(HUM, LOC, rule=DateRule(HUM, True, date(2023, 1, 6)))),
    PairQuery(_any(ENTY, NUM, rule=DateRule(ENTY, False, date(2023, 3, 15)))),
    PairQuery(_any(LOC, ABBR)),
    PairQuery(_any(DESC, NUM, rule=DateRule(NUM, True, date(2023, 2, 1)))),
    PairQuery(_any(HUM, DESC)),
    PairQuery(_any(ENTY, LOC, rule=DateRule(LOC, True, date(2023, 4, 10)))),
    PairQuery(_any(NUM, ABBR, rule=DateRule(ABBR, False, date(2023, 5, 20)))),
    PairQuery(
        Condition(needs=(Need(ENTY), Need(ABBR)), paper_words=f"at least one instance with {ENTY} and one with {ABBR}"),
        _all(Need(ENTY, 1, exact=True)),
    ),
    PairQuery(_all(Need(NUM, 2)), _all(Need(LOC), Need(HUM))),
    PairQuery(_all(Need(DESC, 1, exact=True)), _all(Need(ABBR), Need(ENTY))),
    PairQuery(_all(Need(HUM), Need(NUM)), _all(Need(LOC, 2, exact=True))),
    PairQuery(_all(Need(ENTY), Need(LOC), Need(ABBR)), _all(Need(NUM, 1, exact=True))),
    PairQuery(_all(Need(DESC), Need(HUM)), _all(Need(ENTY, 2), Need(ABBR, 1, exact=True))),
    PairQuery(_all(Need(NUM, 1, exact=True)), _all(Need(LOC), Need(DESC))),
    PairQuery(_all(Need(ABBR), Need(HUM, 1, exact=True)), _all(Need(ENTY), Need(NUM))),
    PairQuery(_all(Need(LOC, 2), Need(ENTY)), _all(Need(DESC, 1, exact=True), Need(ABBR, 1, exact=True))),
    PairQuery(_all(Need(NUM), Need(HUM)), _all(Need(LOC), Need(ENTY), Need(ABBR, 1, exact=True))),
)


def pairs_tasks(suite: str, n: int, length: int, seed: int) -> list[Task]:
    """The 20 queries over one window per block of 20; `n` above 20 uses further windows."""
    tasks: list[Task] = []
    index = 0
    while len(tasks) < n:
        rng = random.Random(f"pairs:{length}:{seed}:{index}")
        window = build_window("trec_coarse", length, rng)
        by_user: dict[str, list[Record]] = {}
        for r in window.records:
            by_user.setdefault(r.user, []).append(r)
        for q_index, query in enumerate(QUERIES[: n - len(tasks)], start=1):
            tasks.append(
                Task(
                    id=f"{suite}-{length}-s{seed}-w{index}-q{q_index:02d}",
                    suite=suite,
                    context=window.text,
                    question=query.question(),
                    gold=query.gold(by_user),
                    meta={
                        "answer_type": "pairs",
                        "query": q_index,
                        "length": length,
                        "n_records": len(window.records),
                        "n_users": len(by_user),
                        "records": window.records,
                    },
                )
            )
        index += 1
    return tasks
