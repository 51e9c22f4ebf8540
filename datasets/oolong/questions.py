"""The questions OOLONG-synth asks about a window, in the official families (counting, user, timeline)
and order, each with its gold and official task and answer types."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

from rlm_datasets.oolong.windows import Record, Window, format_date

MARGIN = 0.02
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass
class Question:
    """One question with its gold (the first official answer) and the official task and answer types."""

    text: str
    gold: object
    answer_type: str  # LABEL, NUMERIC, COMPARISON, USER, DATE or MONTH_YEAR
    task: str  # MOST_FREQ, LEAST_FREQ, SECOND_MOST_FREQ, RELATIVE_FREQ, NUMERIC_ONE_CLASS, REPRESENTED_N_TIMES
    family: str = ""
    input_subset: bool = False


# How the scorer reads each official answer type; month-year answers are matched exactly, as labels are.
SCORER_TYPE = {
    "LABEL": "label",
    "NUMERIC": "number",
    "COMPARISON": "comparison",
    "USER": "user",
    "DATE": "date",
    "MONTH_YEAR": "label",
}
_ABOVE = "In the above data,"


def counting(counts: dict[str, int]) -> list[Question]:
    """The official counting questions over a label -> count table (in its own order)."""
    if not counts or not sum(counts.values()):
        return []
    keys = list(counts)
    total = sum(counts.values())
    share = {k: counts[k] / total for k in keys}
    listing = ", ".join(keys)
    out: list[Question] = []
    top = max(counts.values())
    leaders = [k for k in keys if counts[k] == top]
    closest = min((abs(share[leaders[0]] - share[k]) for k in keys if k != leaders[0]), default=1.0)
    if len(leaders) == 1 and closest > MARGIN:
        out.append(
            Question(
                f"{_ABOVE} which of the labels is the most common? Give your final answer in the form "
                f"'Label: answer' where answer is one of the labels: {listing}.",
                leaders[0],
                "LABEL",
                "MOST_FREQ",
            )
        )
    low = min(counts.values())
    out.append(
        Question(
            f"{_ABOVE} which of the labels is the least common? Give your final answer in the form "
            f"'Label: answer' where answer is one of the labels: {listing}.",
            next(k for k in keys if counts[k] == low),
            "LABEL",
            "LEAST_FREQ",
        )
    )
    for a, b in combinations(keys, 2):
        diff = share[a] - share[b]
        if abs(diff) > MARGIN or diff == 0:
            phrase = "more common than" if counts[a] > counts[b] else "less common than"
            out.append(
                Question(
                    f"{_ABOVE} is label '{a}' more common, less common, or the same frequency as label '{b}'? "
                    f"Give your final answer in the form 'Answer: {a} is [X] {b}', where [X] is 'more common "
                    "than', 'less common than', or 'same frequency as'.",
                    "same frequency as" if diff == 0 else phrase,
                    "COMPARISON",
                    "RELATIVE_FREQ",
                )
            )
    for label in keys:
        out.append(
            Question(
                f"{_ABOVE} how many data points should be classified as label '{label}'? Give your final answer "
                "in the form 'Answer: number'.",
                counts[label],
                "NUMERIC",
                "NUMERIC_ONE_CLASS",
            )
        )
    return out


def _restricted(questions: list[Question], preamble: str) -> list[Question]:
    for q in questions:
        q.text = q.text.replace(_ABOVE, preamble, 1)
        q.input_subset = True
    return questions


def _ranked(counter: Counter[str], k: int) -> list[tuple[str, int]]:
    """The k most frequent items, ties in first-seen order (as the official sorted(Counter) gives)."""
    return sorted(counter.items(), key=lambda kv: kv[1], reverse=True)[:k]


def counting_questions(w: Window, rng: random.Random) -> list[Question]:
    counts = Counter(r.label for r in w.records)
    return counting({label: counts[label] for label in w.labels})


_USER_FORMAT = "Give your final answer in the form 'User: [X]', where [X] is the user ID."


def user_questions(w: Window, rng: random.Random) -> list[Question]:
    out: list[Question] = []
    per_user = Counter(r.user for r in w.records)
    max_set = min(50, len(per_user))
    top = _ranked(per_user, max_set)
    if len(top) > 1 and top[0][1] > top[1][1]:
        out.append(
            Question(f"{_ABOVE} which user is represented most often? {_USER_FORMAT}", top[0][0], "USER", "MOST_FREQ")
        )
        if len(top) == 2 or top[1][1] > top[2][1]:
            out.append(
                Question(
                    f"{_ABOVE} which user is represented the second most often? {_USER_FORMAT}",
                    top[1][0],
                    "USER",
                    "SECOND_MOST_FREQ",
                )
            )
    size = min(1, min(rng.randint(0, 10) + 10, int(max_set * 0.8)))  # the official draw: at most one user
    chosen = [u for u, _ in rng.sample(top, size)]
    names = ", ".join(chosen)
    subset = [r for r in w.records if r.user in chosen]
    sub_top = _ranked(Counter(r.user for r in subset), max_set)
    among = f"For the following question, only consider the subset of users with IDs {names}. Among these users,"
    if len(sub_top) > 1 and sub_top[0][1] > sub_top[1][1]:
        out.append(
            Question(
                f"{among} which user is represented most often? {_USER_FORMAT}", sub_top[0][0], "USER", "MOST_FREQ"
            )
        )
        if len(sub_top) > 2 and sub_top[1][1] > sub_top[2][1]:
            out.append(
                Question(
                    f"{among} which user is represented the second most often? {_USER_FORMAT}",
                    sub_top[1][0],
                    "USER",
                    "SECOND_MOST_FREQ",
                )
            )
    if not subset:
        return out
    out += _restricted(
        counting(dict(Counter(r.label for r in subset))),
        f"For the following question, only consider the subset of instances that are associated with user IDs "
        f"{names}. Among instances associated with these users,",
    )
    for label, users in _users_by_label(subset).items():
        out += _most_instances(among, label, _ranked(Counter(users), 10), input_subset=True)
    for label, users in _users_by_label(w.records).items():
        best = _ranked(Counter(users), 10)
        out += _most_instances(_ABOVE, label, best)
        end = min(9, len(best) - 1)
        middle = 5 if end == 9 else end // 2
        for _ in range(10):
            a, b = best[rng.randint(0, middle)], best[rng.randint(middle, end)]
            if a[1] > b[1] + 1:
                out.append(
                    Question(
                        f"{_ABOVE} which user has more instances with the label {label}: User {a[0]} or User "
                        f"{b[0]}? {_USER_FORMAT}",
                        a[0],
                        "USER",
                        "RELATIVE_FREQ",
                    )
                )
                break
    return out


def _most_instances(prefix: str, label: str, best: list[tuple[str, int]], input_subset: bool = False) -> list[Question]:
    """Which user has the most instances of `label`: asked only when one user leads alone."""
    if len(best) > 1 and best[0][1] > best[1][1]:
        question = f"{prefix} which user has the most instances with the label {label}? {_USER_FORMAT}"
        return [Question(question, best[0][0], "USER", "MOST_FREQ", input_subset=input_subset)]
    return []


def _users_by_label(records: list[Record]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for r in records:
        out[r.label].append(r.user)
    return out


_DATE_FORMAT = "Give your final answer in the form 'Date: [X]', where [X] is the date in the format MM/DD/YYYY."


def timeline_questions(w: Window, rng: random.Random) -> list[Question]:
    out: list[Question] = []
    records = w.records
    per_day = Counter(r.day for r in records)
    days = _ranked(per_day, 50)
    most = f"{_ABOVE} which date is represented most often? {_DATE_FORMAT}"
    if len(days) == 1:
        return [Question(most, days[0][0].isoformat(), "DATE", "MOST_FREQ")]
    if days[0][1] > days[1][1]:
        out.append(Question(most, days[0][0].isoformat(), "DATE", "MOST_FREQ"))
        if len(days) > 2 and days[1][1] > days[2][1]:
            out.append(
                Question(
                    f"{_ABOVE} which date is represented the second most often? {_DATE_FORMAT}",
                    days[1][0].isoformat(),
                    "DATE",
                    "SECOND_MOST_FREQ",
                )
            )
    if len(days) > 3:
        k = days[3][1]
        out.append(
            Question(
                f"{_ABOVE} how many dates are represented exactly {k} times? Give your final answer in the form "
                f"'Answer: [X]', where [X] is the number of dates represented exactly {k} times.",
                sum(1 for c in per_day.values() if c == k),
                "NUMERIC",
                "REPRESENTED_N_TIMES",
            )
        )
    ordered = sorted(records, key=lambda r: r.day)
    out += _before_after(ordered, rng)
    out += _in_month(records, rng)
    out += _in_range(ordered, rng)
    out += _by_month(ordered, w.labels)
    return out


def _before_after(ordered: list[Record], rng: random.Random) -> list[Question]:
    """Label share before versus after a date, asked only when it differs by more than 2% (or not at all)."""
    out: list[Question] = []
    n = len(ordered)
    if n < 4:
        return out
    for _ in range(10):
        start = rng.randint(int(n * 0.15), int(n * 0.75))
        if start >= n - 1:
            start = n - 3
        cut = ordered[start].day
        lo = start
        while lo > 0 and ordered[lo - 1].day == cut:
            lo -= 1
        hi = start + 1
        while hi < n and ordered[hi].day == cut:
            hi += 1
        before, after = [r.label for r in ordered[:lo]], [r.label for r in ordered[hi:]]
        if not before or not after:
            continue
        share_before = {k: c / len(before) for k, c in Counter(before).items()}
        share_after = {k: c / len(after) for k, c in Counter(after).items()}
        keys = sorted(share_before)
        rng.shuffle(keys)
        asked = False
        for key in keys:
            diff = share_before[key] - share_after.get(key, 0)
            if abs(diff) > MARGIN or diff == 0:
                gold = "the same frequency" if diff == 0 else "more common" if diff > 0 else "less common"
                when = cut.isoformat()
                out.append(
                    Question(
                        f"{_ABOVE} was label '{key}' more common, less common, or the same frequency before {when}, "
                        f"as compared to after {when}? Give your final answer in the form 'Answer: {key} is [X] "
                        f"before {when}', where [X] is 'more common', 'less common', or 'the same frequency'.",
                        gold,
                        "COMPARISON",
                        "RELATIVE_FREQ",
                    )
                )
                asked = asked or diff != 0
        if asked:
            break
    return out


def _in_month(records: list[Record], rng: random.Random) -> list[Question]:
    for _ in range(21):
        month = rng.randint(1, 12)
        counts = dict(Counter(r.label for r in records if r.day.month == month))
        if counts:
            name = MONTHS[month - 1]
            return _restricted(
                counting(counts),
                f"For the following question, only consider the subset of instances that occur in {name} of any "
                f"year. Among instances occuring in {name},",
            )
    return []


def _in_range(ordered: list[Record], rng: random.Random) -> list[Question]:
    n = len(ordered)
    start = rng.randint(int(n * 0.1), int(n * 0.5))
    while start > 0 and ordered[start - 1].day == ordered[start].day:
        start -= 1
    offset = 10
    if n < 11:
        offset = n // 2
        if start + offset + 2 >= n:
            offset = -1
    if offset <= 2:
        return []
    end = min(rng.randint(start + offset, max(start + offset + 2, int(n * 0.9))), n - 1)
    while end < n - 1 and ordered[end + 1].day == ordered[end].day:
        end += 1
    first, last = format_date(ordered[start].day), format_date(ordered[end].day)
    return _restricted(
        counting(dict(Counter(r.label for r in ordered[start : end + 1]))),
        f"For the following question, only consider the subset of instances that occur between {first} and "
        f"{last}, inclusive. Among instances occuring in this date range,",
    )


def _by_month(ordered: list[Record], labels: list[str]) -> list[Question]:
    months: dict[tuple[int, int], Counter[str]] = {}
    for r in ordered:
        months.setdefault((r.day.year, r.day.month), Counter())[r.label] += 1
    share = {m: {k: c / sum(cs.values()) for k, c in cs.items()} for m, cs in months.items()}
    present = [label for label in labels if any(r.label == label for r in ordered)]
    out: list[Question] = []
    if not share:
        return out
    first = next(iter(share))
    for a in present:
        for b in present:
            if a != b and share[first].get(a, 0.0) > share[first].get(b, 0.0):
                out.append(
                    Question(
                        f"In which month did the label '{a} first occur more often than the label '{b}'? Give your "
                        "final answer in the form 'Answer: [month] [year]', where [month] is the name of the month "
                        f"and [year] is the four-digit year where '{a}' first occured more often than '{b}.'",
                        f"{MONTHS[first[1] - 1]} {first[0]}",
                        "MONTH_YEAR",
                        "RELATIVE_FREQ",
                    )
                )
    for a in present:
        for b in present:
            if a != b:
                months_ahead = sum(1 for s in share.values() if s.get(a, 0.0) > s.get(b, 0.0))
                out.append(
                    Question(
                        f"For how many months does the label '{a}' occur more frequently than the label '{b}'? "
                        "Disregard months where there is a tie.  Give your final answer in the form 'Answer: [X]', "
                        f"where [X] is the number of months where '{a}' occurs more often than '{b}.'",
                        months_ahead,
                        "NUMERIC",
                        "RELATIVE_FREQ",
                    )
                )
    for a in present:
        alone = sum(1 for s in share.values() if all(v < s.get(a, 0.0) for k, v in s.items() if k != a))
        out.append(
            Question(
                f"For how many months is the label '{a}' the single most frequently occuring label? Disregard "
                "months where there is a tie for the most common label.  Give your final answer in the form "
                f"'Answer: [X]', where [X] is the number of months where '{a}' is the most common label.",
                alone,
                "NUMERIC",
                "MOST_FREQ",
            )
        )
    return out


FAMILIES: dict[str, Callable[[Window, random.Random], list[Question]]] = {
    "counting": counting_questions,
    "user": user_questions,
    "timeline": timeline_questions,
}


def window_questions(window: Window, rng: random.Random) -> list[Question]:
    """Every official question of a window, in generation order (counting, user, timeline)."""
    out: list[Question] = []
    for family, make in FAMILIES.items():
        for q in make(window, rng):
            q.family = family
            out.append(q)
    return out
