"""The generators are deterministic, shaped like the papers' suites, and their gold answers agree with
the hidden labels."""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import uuid
from collections import Counter
from datetime import date, datetime

import pytest
from rlm_datasets import load_oolong_file, load_suite, parse_length, score
from rlm_datasets.oolong.questions import counting
from rlm_datasets.oolong.windows import Record, label_counts, n_instances
from rlm_datasets.pairs import QUERIES, Condition, DateRule, Need, PairQuery
from rlm_datasets.pools import load_pool
from rlm_datasets.sniah import DEPTHS, NOISE, TOKENS_TO_GENERATE, key_words

from rlm.errors import ConfigError
from rlm.tokens import count_tokens

LINE = re.compile(r"^Date: [A-Z][a-z]{2} \d{2}, \d{4} \|\| User: \d{5} \|\| Instance: .+$")


def test_oolong_is_deterministic_and_seeded() -> None:
    a = load_suite("oolong", n=6, length=8192, seed=1)
    b = load_suite("oolong", n=6, length=8192, seed=1)
    c = load_suite("oolong", n=6, length=8192, seed=2)
    assert [(t.id, t.context, t.question, t.gold) for t in a] == [(t.id, t.context, t.question, t.gold) for t in b]
    assert a[0].context != c[0].context


@pytest.mark.parametrize(("name", "pool"), [("oolong", "trec_coarse"), ("oolong-spam", "spam")])
def test_oolong_window_has_the_official_shape_and_size(name: str, pool: str) -> None:
    tasks = load_suite(name, n=30, length=8192)
    context = tasks[0].context
    n = tasks[0].meta["n_records"]
    # official sizing: int((0.95 * length - PROMPT_TOKENS - 250) // PER_EXAMPLE_TOKENS)
    assert (
        n
        == n_instances(pool, 8192)
        == {"trec_coarse": (7782 - 168 - 250) // 39, "spam": (7782 - 142 - 250) // 57}[pool]
    )
    assert context.startswith(f"The following lines contain {n} ")
    assert f"Recall: the preceding lines contain {n} " in context
    lines = [ln for ln in context.splitlines() if ln.startswith("Date:")]
    assert len(lines) == n and all(LINE.match(ln) for ln in lines)
    for ln in lines:  # labels are inferred, never printed after the instance
        assert "|| Label:" not in ln
    days = [r.day for r in tasks[0].meta["records"]]
    assert min(days) >= date(2022, 2, 16) and max(days) <= date(2025, 6, 21)
    assert len({t.id for t in tasks}) == len(tasks)
    assert len({t.context for t in tasks}) == 2 and len(tasks[:25]) == 25  # 25 questions per window


def test_oolong_label_mix_is_the_official_tempered_softmax() -> None:
    rng = random.Random(0)
    for _ in range(50):
        counts = label_counts(list("abcdef"), 3182, rng)
        assert sum(counts) == 3182 and min(counts) >= 0
    # weights randint(1, 30) ** (1 / T) with T >= 2 lie in [1, 30 ** 0.5]: no label exceeds e ** 4.48 times another
    ratios = [max(c) / max(min(c), 1) for c in (label_counts(["a", "b"], 10_000, rng) for _ in range(200))]
    assert max(ratios) <= math.exp(30**0.5 - 1) + 1


def test_oolong_131k_window_repeats_only_what_the_official_sizing_asks_for() -> None:
    tasks = load_suite("oolong", n=3, length="131K")
    assert len({id(t.context) for t in tasks}) == 1
    records = tasks[0].meta["records"]
    assert len(records) == n_instances("trec_coarse", 131072) == 3182
    pool = load_pool("trec_coarse")
    have = Counter(pool.gold)
    # an instance repeats only for a label asked more often than the pool holds it, and only as often as that needs
    for label, count in Counter(r.label for r in records).items():
        pool_texts = Counter(t for t, g in zip(pool.texts, pool.gold, strict=True) if g == label)
        mine = Counter(r.text for r in records if r.label == label)
        copies = -(-count // have[label])
        assert all(n <= copies * pool_texts[text] for text, n in mine.items())
    unique = len({(r.text, r.label) for r in records})
    assert tasks[0].meta["repeated"] == pytest.approx(1 - unique / len(records), abs=1e-3)


def test_oolong_margin_rule() -> None:
    close = counting({"a": 100, "b": 98, "c": 50})  # a leads b by 1% of 248: no "most common", no a-vs-b
    assert "MOST_FREQ" not in {q.task for q in close}
    asked = [re.findall(r"label '([^']+)'", q.text) for q in close if q.answer_type == "COMPARISON"]
    assert asked == [["a", "c"], ["b", "c"]]
    tie = counting({"a": 10, "b": 10})  # equal shares are asked, with the official "same frequency as"
    assert [q.gold for q in tie if q.answer_type == "COMPARISON"] == ["same frequency as"]
    clear = counting({"a": 60, "b": 40})
    assert [(q.task, q.gold) for q in clear][:3] == [
        ("MOST_FREQ", "a"),
        ("LEAST_FREQ", "b"),
        ("RELATIVE_FREQ", "more common than"),
    ]
    assert [q.gold for q in clear if q.task == "NUMERIC_ONE_CLASS"] == [60, 40]


FORMATS = {
    "LABEL": "Give your final answer in the form 'Label: answer' where answer is one of the labels:",
    "NUMERIC": "Give your final answer in the form 'Answer: ",
    "COMPARISON": "Give your final answer in the form 'Answer: ",
    "USER": "Give your final answer in the form 'User: [X]', where [X] is the user ID.",
    "DATE": "Give your final answer in the form 'Date: [X]', where [X] is the date in the format MM/DD/YYYY.",
    "MONTH_YEAR": "Give your final answer in the form 'Answer: [month] [year]'",
}


def _official_style_answer(t) -> str:
    """A reply in the format the question asks for, carrying the gold answer."""
    kind = t.meta["official_answer_type"].split(".")[1]
    if kind == "DATE":
        return "Date: " + date.fromisoformat(t.gold).strftime("%m/%d/%Y")
    if kind == "COMPARISON":
        a = re.search(r"label '([^']+)'", t.question)[1]
        return f"Some reasoning first.\nAnswer: {a} is {t.gold} the other one"
    prefix = {"LABEL": "Label", "USER": "User"}.get(kind, "Answer")
    return f"Counted line by line.\n{prefix}: {t.gold}"


@pytest.mark.parametrize(("name", "length"), [("oolong", 8192), ("oolong-spam", 8192), ("oolong-spam", 65536)])
def test_oolong_questions_use_the_official_formats_and_score_in_them(name: str, length: int) -> None:
    tasks = load_suite(name, n=100, length=length, seed=4)
    seen = set()
    for t in tasks:
        kind = t.meta["official_answer_type"].split(".")[1]
        seen.add(kind)
        assert FORMATS[kind] in t.question, t.question
        assert score(t, _official_style_answer(t)) == 1.0, (t.question, t.gold)
    assert {"LABEL", "NUMERIC", "COMPARISON", "USER"} <= seen


def test_oolong_families_come_in_the_official_order() -> None:
    order = {"counting": 0, "user": 1, "timeline": 2}
    tasks = load_suite("oolong-spam", n=50, length=8192, seed=2)
    for w in {t.context for t in tasks}:
        families = [order[t.meta["family"]] for t in tasks if t.context == w]
        assert families == sorted(families) and len(families) == 25
    assert {t.meta["family"] for t in tasks} == set(order)


def test_oolong_gold_matches_hidden_labels() -> None:
    """Recompute each gold from the window's hidden labels, independently of the generator's code."""
    checked = Counter()
    for name in ("oolong", "oolong-spam"):
        for t in load_suite(name, n=75, length=16384, seed=3):
            records: list[Record] = t.meta["records"]
            q = t.question
            if m := re.search(r"associated with user IDs ([\d, ]+)\. Among", q):
                records = [r for r in records if r.user in m[1].split(", ")]
            elif m := re.search(r"occur in (\w+) of any year", q):
                records = [r for r in records if r.day.strftime("%B") == m[1]]
            elif m := re.search(r"between (\w{3} \d{2}, \d{4}) and (\w{3} \d{2}, \d{4}), inclusive", q):
                lo, hi = (datetime.strptime(x, "%b %d, %Y").date() for x in (m[1], m[2]))
                records = [r for r in records if lo <= r.day <= hi]
            counts = Counter(r.label for r in records)
            if m := re.search(r"how many data points should be classified as label '([^']+)'", q):
                assert t.gold == counts[m[1]]
            elif "which of the labels is the most common" in q:
                assert counts[t.gold] == max(counts.values()) and list(counts.values()).count(counts[t.gold]) == 1
            elif m := re.search(
                r"is label '([^']+)' more common, less common, or the same frequency as label '([^']+)'", q
            ):
                a, b = counts[m[1]], counts[m[2]]
                assert t.gold == ("more common than" if a > b else "less common than" if a < b else "same frequency as")
                assert a == b or abs(a - b) / sum(counts.values()) > 0.02
            elif "which user is represented most often" in q and "subset" not in q:
                per_user = Counter(r.user for r in records)
                assert per_user[t.gold] == max(per_user.values())
            elif m := re.search(r"^In the above data, which user has the most instances with the label (.+)\? Give", q):
                per_user = Counter(r.user for r in records if r.label == m[1])
                assert per_user[t.gold] == max(per_user.values())
            elif "which date is represented most often" in q:
                per_day = Counter(r.day for r in records)
                assert per_day[date.fromisoformat(t.gold)] == max(per_day.values())
            elif m := re.search(r"how many dates are represented exactly (\d+) times", q):
                assert t.gold == sum(1 for c in Counter(r.day for r in records).values() if c == int(m[1]))
            else:
                continue
            checked[t.meta["official_task"]] += 1
    assert checked["TASK_TYPE.NUMERIC_ONE_CLASS"] > 10 and checked["TASK_TYPE.RELATIVE_FREQ"] > 10
    assert checked["TASK_TYPE.MOST_FREQ"] > 3


def test_pairs_suite_has_twenty_queries_with_consistent_gold() -> None:
    tasks = load_suite("oolong-pairs", length=8192)
    assert len(tasks) == len(QUERIES) == 20
    for task in tasks:
        assert task.meta["answer_type"] == "pairs"
        assert all(int(a) < int(b) for a, b in task.gold)
        answer = "\n".join(f"({a}, {b})" for a, b in task.gold)
        assert score(task, answer) == 1.0


def test_pairs_questions_are_the_papers() -> None:
    head = "In the above data, list all pairs of user IDs (no duplicate pairs, list lower ID first) "
    tail = (
        " Each of the questions can be labelled as one of the labels (the data does not provide the labels, you need "
        "to figure out the label from the semantics of the question): description and abstract concept, entity, "
        "human being, numeric value, location, abbreviation. In your answer, list all pairs in the format "
        "(user_id_1, user_id_2), separated by newlines."
    )
    assert QUERIES[3].question() == head + (
        "where both users have at least one instance with a human being or location, and all instances that are a "
        "human being for both users must be after January 6, 2023." + tail
    )
    assert QUERIES[19].question() == head + (
        "such that one user has at least one instance with numeric value and at least one instance with human being, "
        "and the other user has at least one instance with location, at least one instance with entity, and exactly "
        "one instance with abbreviation." + tail
    )
    assert "at least one instance with entity and one with abbreviation, and" in QUERIES[10].question()
    task = load_suite("oolong-pairs", n=1, length=32768)[0]
    assert task.meta["n_records"] == 787  # the paper's published 32K trec_coarse window holds 787 instances


def test_pair_conditions_by_hand() -> None:
    def rec(user: str, label: str, day: date = date(2023, 6, 1)) -> Record:
        return Record(day, user, "x", label)

    by_user = {
        "10001": [rec("10001", "entity"), rec("10001", "abbreviation")],
        "10002": [rec("10002", "entity")],
        "10003": [rec("10003", "entity"), rec("10003", "entity")],
        "10004": [rec("10004", "location", date(2023, 1, 1))],
    }
    q11 = QUERIES[10]  # one has entity and abbreviation, the other exactly one entity
    assert q11.gold(by_user) == [["10001", "10002"]]
    sym = PairQuery(Condition(any_of=("entity", "location"), rule=DateRule("location", True, date(2023, 4, 10))))
    assert sym.gold(by_user) == [["10001", "10002"], ["10001", "10003"], ["10002", "10003"]]
    assert Need("entity", 2, exact=True).holds(Counter(["entity", "entity"]))
    assert "and the other user has exactly one instance with entity." in q11.question()


def _prompt_tokens(t) -> int:
    """What RULER counts against the length: the prompt, the value and the 128-token reply allowance."""
    return count_tokens(f"{t.context}\n\n{t.question} {t.gold[0]}") + TOKENS_TO_GENERATE


@pytest.mark.parametrize("suite", ["sniah", "sniah-noise", "sniah-uuid"])
def test_sniah_follows_ruler_single_needle(suite: str) -> None:
    tasks = load_suite(suite, n=3, length=8192, seed=5)
    assert [(t.context, t.question, t.gold) for t in tasks] == [
        (t.context, t.question, t.gold) for t in load_suite(suite, n=3, length=8192, seed=5)
    ]
    assert tasks[0].context != load_suite(suite, n=1, length=8192, seed=6)[0].context
    uuid_value = suite == "sniah-uuid"
    kind = "uuid" if uuid_value else "number"
    for t in tasks:
        (value,) = t.gold
        key = t.meta["key"]
        # an adjective-noun pair from the shipped wonderwords lists, as RULER's keys
        adjectives, nouns = set(key_words("adjectives")), set(key_words("nouns"))
        assert any(key[:i] in adjectives and key[i + 1 :] in nouns for i, c in enumerate(key) if c == "-"), key
        if uuid_value:
            assert str(uuid.UUID(value)) == value
        else:
            assert re.fullmatch(r"[1-9]\d{6}", value)
        assert t.context.count(f"One of the special magic {kind}s for {key} is: {value}.") == 1
        assert t.context.startswith(f"A special magic {kind} is hidden within the following text.")
        assert t.question == f"What is the special magic {kind} for {key} mentioned in the provided text?"
        assert 0.97 * 8192 <= _prompt_tokens(t) <= 8192
        assert score(t, f"The special magic {kind} for {key} mentioned in the provided text is {value}.") == 1.0


def test_sniah_essay_needle_sits_at_a_ruler_depth_on_a_sentence_boundary() -> None:
    assert DEPTHS[:4] == (0, 3, 5, 8) and DEPTHS[-1] == 100 and len(DEPTHS) == 40  # round(linspace(0, 100, 40))
    depths = set()
    for t in load_suite("sniah", n=24, length=2048, seed=1):
        depths.add(t.meta["depth"])
        assert t.meta["depth"] in DEPTHS
        body = t.context.split("\n", 1)[1]
        needle = f"One of the special magic numbers for {t.meta['key']} is: {t.gold[0]}."
        before, after = body.split(needle)
        assert before == "" or before.endswith(". ")
        assert after == "" or after.startswith(" ")
        n_before, n_after = before.count("."), after.count(".")  # every filler sentence ends in its only stop
        assert n_before == int((n_before + n_after) * t.meta["depth"] / 100)  # RULER's insertion index
    assert len(depths) > 10


def test_sniah_noise_haystack_is_rulers_repeated_lines() -> None:
    t = load_suite("sniah-noise", n=1, length=4096, seed=2)[0]
    lines = t.context.splitlines()[1:]
    needle = [ln for ln in lines if ln.startswith("One of the special magic")]
    assert len(needle) == 1
    assert set(lines) - set(needle) == {NOISE}


def test_sniah_lengths_and_fixed_suite() -> None:
    sweep = load_suite("sniah", n=3)
    assert [t.meta["length"] for t in sweep] == [8192, 16384, 32768]
    fixed = load_suite("sniah-80k", n=1)[0]
    assert fixed.meta["length"] == 80000 and 0.97 * 80000 <= _prompt_tokens(fixed) <= 80000
    with pytest.raises(ConfigError):
        load_suite("sniah-80k", n=1, length=8192)


def test_unknown_suite_and_lengths() -> None:
    with pytest.raises(ConfigError):
        load_suite("nope")
    assert parse_length("131K") == parse_length("128k") == 131072
    assert parse_length("80K") == 80000
    assert parse_length("7K") == 7 * 1024  # every K is 1024, as in 8K = 8192
    assert parse_length(4096) == 4096


@pytest.mark.parametrize(
    ("suite", "kwargs", "message"),
    [
        ("oolong", {"length": 7}, "--length 7 is out of range"),
        ("sniah", {"length": 0}, "out of range"),
        ("oolong-pairs", {"length": "4M"}, "bad length"),
        ("sniah", {"n": 0}, "--n must be at least 1"),
        ("oolong", {"n": -3}, "--n must be at least 1"),
    ],
)
def test_bad_sizes_are_config_errors_not_crashes(suite: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_suite(suite, **kwargs)


def test_published_file_loader(tmp_path) -> None:
    rows = [
        {
            "id": 7,
            "dataset": "trec_coarse",
            "context_len": 1024,
            "task_group": "counting",
            "task": "MOST_FREQ",
            "answer_type": "ANSWER_TYPE.LABEL",
            "context_window_text": "Date: Jan 01, 2023 || User: 1 || Instance: Who wrote Hamlet ?",
            "question": "Which label is most common? Answer as 'Label: <label>'.",
            "answer": "['human being']",
        },
        {
            "id": 8,
            "dataset": "trec_coarse",
            "context_len": 1024,
            "task_group": "counting",
            "task": "COUNT",
            "answer_type": "ANSWER_TYPE.NUMERIC",
            "context_window_text": "...",
            "question": "How many?",
            "answer": "[12]",
        },
        {
            "id": 9,
            "dataset": "spam",
            "context_len": 2048,
            "answer_type": "ANSWER_TYPE.LABEL",
            "context_window_text": "...",
            "question": "?",
            "answer": "spam",
        },
    ]
    path = tmp_path / "oolong.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tasks = load_oolong_file(path, dataset="trec_coarse")
    assert [t.gold for t in tasks] == ["human being", 12.0]
    assert [t.meta["answer_type"] for t in tasks] == ["label", "number"]
    assert score(tasks[0], "Label: human being") == 1.0
    assert score(tasks[1], "Answer: 11") == 0.75
    assert len(load_suite(str(path), length=2048)) == 1
    with pytest.raises(ConfigError):
        load_oolong_file(tmp_path / "missing.jsonl")


def test_generated_suites_are_the_same_in_every_process() -> None:
    """Nothing depends on set or hash order: two interpreters with different hash seeds build the same tasks."""
    code = (
        "import hashlib, json\n"
        "from rlm_datasets import load_suite\n"
        "tasks = [t for s in ('oolong-spam', 'oolong-pairs', 'sniah') for t in load_suite(s, n=30, length=8192)]\n"
        "blob = json.dumps([[t.context, t.question, t.gold] for t in tasks], default=str)\n"
        "print(hashlib.sha256(blob.encode()).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1
