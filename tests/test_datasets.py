"""The generators are deterministic, shaped like the papers' suites, and their gold answers agree with
the hidden labels."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter

import pytest
from rlm_datasets import load_oolong_file, load_suite, parse_length, score
from rlm_datasets.oolong import Record
from rlm_datasets.pairs import QUERIES, Condition, DateRule, Need, PairQuery
from rlm_datasets.sniah import DEPTHS, NOISE, TOKENS_TO_GENERATE

from rlm.errors import ConfigError
from rlm.tokens import count_tokens

LINE = re.compile(r"^Date: [A-Z][a-z]{2} \d{2}, \d{4} \|\| User: \d{5} \|\| Instance: .+$")


def test_oolong_is_deterministic_and_seeded() -> None:
    a = load_suite("oolong", n=6, length=8192, seed=1)
    b = load_suite("oolong", n=6, length=8192, seed=1)
    c = load_suite("oolong", n=6, length=8192, seed=2)
    assert [(t.id, t.context, t.question, t.gold) for t in a] == [(t.id, t.context, t.question, t.gold) for t in b]
    assert a[0].context != c[0].context


@pytest.mark.parametrize("name", ["oolong", "oolong-spam"])
def test_oolong_window_shape_and_size(name: str) -> None:
    tasks = load_suite(name, n=12, length=8192)
    context = tasks[0].context
    lines = [ln for ln in context.splitlines() if ln.startswith("Date:")]
    assert lines and all(LINE.match(ln) for ln in lines)
    assert 0.85 * 8192 <= count_tokens(context) <= 0.95 * 8192
    labels = {r.label for r in tasks[0].meta["records"]}
    for ln in lines:  # labels are inferred, never printed after the instance
        assert not any(ln.endswith(f"|| Label: {label}") for label in labels)
    assert {t.meta["family"] for t in tasks} == {"counting", "user", "timeline"}
    assert len({t.id for t in tasks}) == len(tasks)


def test_oolong_gold_matches_hidden_labels() -> None:
    for task in load_suite("oolong", n=10, length=8192, seed=3):
        records: list[Record] = task.meta["records"]
        counts = Counter(r.label for r in records)
        q = task.question
        if q.startswith("In the data above, which label is the most common?"):
            assert counts[task.gold] == max(counts.values())
        m = re.match(r"In the data above, how many instances have the label '([^']+)'", q)
        if m:
            assert task.gold == counts[m[1]]
        m = re.match(r"In the data above, how many instances from user (\d+) have the label '([^']+)'", q)
        if m:
            assert task.gold == sum(1 for r in records if r.user == m[1] and r.label == m[2])


def test_oolong_131k_window_is_built_once_per_window_and_fits() -> None:
    tasks = load_suite("oolong", n=3, length="131K")
    assert len({id(t.context) for t in tasks}) == 1
    assert 0.85 * 131072 <= count_tokens(tasks[0].context) <= 0.95 * 131072


def test_pairs_suite_has_twenty_queries_with_consistent_gold() -> None:
    tasks = load_suite("oolong-pairs", length=8192)
    assert len(tasks) == len(QUERIES) == 20
    for task in tasks:
        assert task.meta["answer_type"] == "pairs"
        assert all(int(a) < int(b) for a, b in task.gold)
        answer = "\n".join(f"({a}, {b})" for a, b in task.gold)
        assert score(task, answer) == 1.0


def test_pair_conditions_by_hand() -> None:
    from datetime import date

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
    assert "exactly 1 instance labelled 'entity'" in q11.question()


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
        assert re.fullmatch(r"[a-z][a-z' -]*-[a-z][a-z' -]*", key), key  # adjective-noun, as RULER's keys
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
