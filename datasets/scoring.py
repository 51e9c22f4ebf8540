"""Scorers for the three suites, in the way their authors score them.

OOLONG (the default, `score`): the rules of the official scorer (`synth_attempt_answer_parse` and
`synth_process_response` in `src/eval/eval_helpers.py` of the abertsch72/oolong repository), written anew:
the answer is the text after the last colon, stripped, with `*`, `[` and `]` removed (an answer without a
colon is kept whole when shorter than 20 characters, else its last word); an answer of 20 characters or
more that names a comparison ("more common", "less common", "same frequency") is reduced to that phrase.
It then scores 1 on an exact, case-sensitive match with the gold; a comparison phrase scores 1 when the
gold contains it; numbers score 0.75 ** |gold - pred| when the answer parses as a whole number
(paper, arXiv 2512.24601, §2.1: "score(ŷ) = 0.75^|y−ŷ|" for numeric answers, exact match otherwise);
dates score 1 when they parse to the gold date. OOLONG-Pairs: F1 between predicted and gold pair sets.
S-NIAH: the share of reference strings that appear in the answer.

`score_lenient` keeps the older, forgiving reading (markup stripped, any case, comparisons stated either
way round, month-level dates); it is reported only as its own `lenient_score` column, never as the score.
Every scorer takes whatever text a model produced (or None) and returns a float in [0, 1]; malformed
answers score 0 rather than raising.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from dateutil import parser as dateparser
from rlm_datasets.task import Task

COMPARISONS = ("more common than", "less common than", "same frequency as")
_MONTH_NAMES = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTHS = {
    **{m: i + 1 for i, m in enumerate(_MONTH_NAMES)},
    **{m[:3]: i + 1 for i, m in enumerate(_MONTH_NAMES)},
}
_MONTHS["sept"] = 9
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_TAGS = re.compile(r"</?[A-Za-z_][\w-]*>")
_EDGE = " \t\r\n.,;!?\"'`()[]{}<>"


def strip_markup(text: str) -> str:
    """Drop Markdown/LaTeX/XML decoration that models wrap answers in."""
    text = _BOXED.sub(r"\1", text)
    text = _TAGS.sub(" ", text)
    text = re.sub(r"\\text\{([^{}]*)\}", r"\1", text)
    return re.sub(r"\*\*|__|[*`#$]", "", text)


def answer_segment(text: str | None) -> str:
    """The text after the last colon, first non-empty line, trimmed of quotes and punctuation."""
    if not text:
        return ""
    tail = strip_markup(text).rsplit(":", 1)[-1]
    line = next((ln for ln in tail.splitlines() if ln.strip()), "")
    return " ".join(line.split()).strip(_EDGE)


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).strip(_EDGE)


def score_label(answer: str | None, gold: str) -> float:
    return float(_norm(answer_segment(answer)) == _norm(gold))


def score_user(answer: str | None, gold: str) -> float:
    m = re.search(r"\d+", answer_segment(answer))
    return float(m is not None and m.group() == str(gold).strip())


def parse_number(text: str) -> float | None:
    m = re.search(r"-?\d[\d,]*(?:\.\d+)?", text)
    if m is None:
        return None
    try:
        return float(m.group().replace(",", ""))
    except ValueError:
        return None


def score_number(answer: str | None, gold: float) -> float:
    pred = parse_number(answer_segment(answer))
    return 0.0 if pred is None else 0.75 ** abs(float(gold) - pred)


def _split_comparison(text: str) -> tuple[str, str, str] | None:
    """(left, phrase, right) when exactly one of the three phrases occurs in `text`."""
    low = _norm(text)
    found = [p for p in COMPARISONS if p in low]
    if len(found) != 1:
        return None
    left, right = low.split(found[0], 1)
    return left.strip(_EDGE).removesuffix(" is").strip(_EDGE), found[0], right.strip(_EDGE)


_INVERSE = dict(zip(COMPARISONS, ("less common than", "more common than", "same frequency as"), strict=True))


def score_comparison(answer: str | None, gold: str) -> float:
    """Right phrase scores 1; an answer stated the other way round ('B is less common than A') counts too."""
    pred, want = _split_comparison(answer_segment(answer)), _split_comparison(gold)
    if pred is None or want is None:
        return 0.0
    left, phrase, right = pred
    g_left, g_phrase, g_right = want
    if g_right and g_left and left.endswith(g_right) and right.startswith(g_left) and g_left != g_right:
        phrase = _INVERSE[phrase]
    return float(phrase == g_phrase)


def parse_date(text: str) -> tuple[int, int, int | None] | None:
    """(year, month, day or None) from 'March 2023', 'Mar 05, 2023', '2023-03(-05)', '03/2023'."""
    low = text.lower()
    m = re.search(r"\b(\d{4})-(\d{1,2})(?:-(\d{1,2}))?\b", low)
    if m:
        return int(m[1]), int(m[2]), int(m[3]) if m[3] else None
    m = re.search(r"\b([a-z]+)\.?\s+(?:(\d{1,2})(?:st|nd|rd|th)?,?\s+)?(\d{4})\b", low)
    if m and m[1] in _MONTHS:
        return int(m[3]), _MONTHS[m[1]], int(m[2]) if m[2] else None
    m = re.search(r"\b(\d{1,2})/(\d{4})\b", low)
    if m:
        return int(m[2]), int(m[1]), None
    return None


def score_date(answer: str | None, gold: str) -> float:
    """Match at the gold's precision: month and year, plus the day when the gold has one."""
    want = parse_date(str(gold))
    if not answer or want is None:
        return 0.0
    pred = parse_date(answer_segment(answer)) or parse_date(strip_markup(answer).splitlines()[-1])
    if pred is None or pred[:2] != want[:2]:
        return 0.0
    return float(want[2] is None or pred[2] == want[2])


_PAIR = re.compile(r"\(\s*['\"]?(\d+)['\"]?\s*,\s*['\"]?(\d+)['\"]?\s*\)")


def parse_pairs(text: str | None) -> set[tuple[str, str]]:
    """Every '(a, b)' in the text as an ordered pair (smaller ID first); self-pairs dropped."""
    pairs = set()
    for a, b in _PAIR.findall(strip_markup(text or "")):
        if a != b:
            pairs.add((a, b) if int(a) < int(b) else (b, a))
    return pairs


def score_pairs(answer: str | None, gold: Iterable[Iterable[Any]]) -> float:
    """F1 of predicted against gold pairs; both empty is a perfect answer."""
    want = {tuple(sorted((str(a), str(b)), key=int)) for a, b in gold}
    got = parse_pairs(answer)
    if not want and not got:
        return 1.0
    tp = len(want & got)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(got), tp / len(want)
    return 2 * precision * recall / (precision + recall)


def score_contains(answer: str | None, refs: Iterable[str]) -> float:
    refs = list(refs)
    if not refs:
        return 0.0
    text = (answer or "").lower()
    return sum(str(r).lower() in text for r in refs) / len(refs)


LENIENT_SCORERS = {
    "label": score_label,
    "user": score_user,
    "number": score_number,
    "comparison": score_comparison,
    "date": score_date,
    "pairs": score_pairs,
    "contains": score_contains,
}

# The phrases the official parser reduces a long comparison answer to, in the order it tries them.
OFFICIAL_PHRASES = ("more common", "less common", "same frequency")
_SHORT = 20  # the official parser keeps answers (and colon-less replies) shorter than this as they are


def official_parse(answer: str | None) -> str:
    """The answer as the official OOLONG parser extracts it (see the module docstring)."""
    text = answer or ""
    if ":" not in text:
        if len(text) < _SHORT:
            return text
        words = text.split()
        return words[-1] if words else ""
    candidate = text.split(":")[-1].strip().replace("*", "").replace("[", "").replace("]", "")
    if len(candidate) >= _SHORT:
        for phrase in OFFICIAL_PHRASES:
            if phrase in candidate:
                return phrase
    return candidate


# Two far-apart defaults: a date parses to the same value under both only if it names every field, so a
# field missing from the answer but present in the gold never matches by chance. (The official scorer fills
# missing fields from the day it runs, so "March 2023" matched a full gold date on one day a month.)
_DEFAULTS = (dt.datetime(2000, 1, 1), dt.datetime(1999, 12, 28))


def _dates(text: str) -> tuple[dt.datetime, ...] | None:
    try:
        return tuple(dateparser.parse(text, default=d) for d in _DEFAULTS)
    except (ValueError, OverflowError):
        return None


def official_gold_text(gold: Any, kind: str) -> str:
    """The gold as the official scorer prints it: a date gold is a datetime, `str` gives '2023-03-05 00:00:00'."""
    if kind == "date" and isinstance(gold, dt.date | str):
        try:
            day = gold if isinstance(gold, dt.date) else dt.date.fromisoformat(gold)
        except ValueError:
            return str(gold)
        return str(dt.datetime(day.year, day.month, day.day))
    return str(gold)


def score_official(answer: str | None, gold: Any, kind: str) -> float:
    """One OOLONG answer scored by the official rules; `kind` is the task's answer type."""
    pred = official_parse(answer)
    want = official_gold_text(gold, kind)
    if pred == want:
        return 1.0
    if pred in OFFICIAL_PHRASES:
        return float(pred in want)
    if kind == "number":
        try:
            return 0.75 ** abs(int(float(gold)) - int(pred))
        except (TypeError, ValueError):
            return 0.0  # the official scorer gives 0 to an answer that is not a whole number
    if kind == "date":
        got, expected = _dates(pred), _dates(want)
        return float(got is not None and got == expected)
    return 0.0


OOLONG_TYPES = frozenset({"label", "user", "number", "comparison", "date"})


def score(task: Task, answer: str | None) -> float:
    """Score `answer` for `task` as the suite's authors do (official OOLONG rules, Pairs F1, S-NIAH recall)."""
    kind = task.meta["answer_type"]
    if kind in OOLONG_TYPES:
        return score_official(answer, task.gold, kind)
    return LENIENT_SCORERS[kind](answer, task.gold)


def score_lenient(task: Task, answer: str | None) -> float:
    """The forgiving reading of `answer`, for the separately labelled `lenient_score` column only."""
    return LENIENT_SCORERS[task.meta["answer_type"]](answer, task.gold)


def parsed_answer(task: Task, answer: str | None) -> str | list[list[str]]:
    """What the default scorer read from `answer`: kept beside the raw answer so a 0 can be diagnosed."""
    kind = task.meta["answer_type"]
    if kind in OOLONG_TYPES:
        return official_parse(answer)
    if kind == "pairs":
        return [list(p) for p in sorted(parse_pairs(answer))]
    return " ".join((answer or "").split())[:200]
