"""OOLONG answers scored by the official rules, and published OOLONG files scored through `rlm bench`.

The rules are those of `synth_attempt_answer_parse` / `synth_process_response` in
`src/eval/eval_helpers.py` of the abertsch72/oolong repository, and of the RLM paper (arXiv 2512.24601,
§2.1): "score(ŷ) = 0.75^|y−ŷ|" for numeric answers, exact match for everything else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rlm_datasets import Task, load_oolong_file
from rlm_datasets.scoring import official_parse, score, score_lenient

from rlm.bench import run_bench
from rlm.scripted import ChatRequest, ScriptedServer


def _task(kind: str, gold: object) -> Task:
    return Task("t", "oolong", "ctx", "q", gold, {"answer_type": kind})


@pytest.mark.parametrize(
    ("answer", "parsed"),
    [
        # rule: the answer is what follows the last colon, stripped
        ("Thinking... so the answer is\nLabel: entity  ", "entity"),
        ("Date: x: Answer: 42", "42"),
        # rule: '*' (bolding) and '[' ']' (bracketed answers) are removed
        ("Answer: **[spam]**", "spam"),
        # ... after the strip, so a space left between two bold runs stays (and the answer then scores 0)
        ("**Answer:** **spam**", " spam"),
        # rule: no colon and shorter than 20 characters: the whole reply, unstripped
        (" entity", " entity"),
        # rule: no colon and 20 characters or more: the last whitespace-separated word
        ("I am quite sure that it is numeric", "numeric"),
        # rule: a candidate of 20+ characters that names a comparison becomes that phrase
        ("Answer: entity is more common than location", "more common"),
        ("Answer: ham occurs with the same frequency as spam", "same frequency"),
        # ... but one under 20 characters is kept as it is
        ("Answer: less common than", "less common than"),
        ("", ""),
        (None, ""),
    ],
)
def test_official_parse(answer: str | None, parsed: str) -> None:
    assert official_parse(answer) == parsed


def test_labels_and_users_match_exactly_and_case_sensitively() -> None:
    # rule: `str(trimmed_output) == str(gold)` scores 1; nothing else is normalised
    assert score(_task("label", "entity"), "Label: entity") == 1.0
    assert score(_task("label", "entity"), "Label: Entity") == 0.0
    assert score(_task("label", "entity"), "Label: entity.") == 0.0
    assert score(_task("user", 48213), "User: 48213") == 1.0
    assert score(_task("user", "48213"), "User: user 48213") == 0.0
    # the lenient reading forgives case and punctuation, but only in its own column
    assert score_lenient(_task("label", "entity"), "Label: Entity.") == 1.0


def test_numbers_score_075_to_the_distance_and_unparsable_numbers_score_0() -> None:
    # rule: numeric answers get 0.75 ** |gold - int(answer)|; int() of the answer must succeed
    assert score(_task("number", 12), "Answer: 12") == 1.0
    assert score(_task("number", 12), "Answer: 10") == pytest.approx(0.75**2)
    assert score(_task("number", 12.0), "Answer: 15") == pytest.approx(0.75**3)
    assert score(_task("number", 12), "Answer: 12.0") == 0.0
    assert score(_task("number", 12), "Answer: about 12") == 0.0
    assert score(_task("number", 12), "Answer: 1,2") == 0.0


def test_comparison_phrases_score_when_the_gold_contains_them() -> None:
    # rule: a parsed 'more common' / 'less common' / 'same frequency' scores 1 when it is in the gold
    for gold in ("more common", "more common than"):
        assert score(_task("comparison", gold), "Answer: entity is more common than location") == 1.0
        assert score(_task("comparison", gold), "Answer: entity is less common than location") == 0.0
    assert score(_task("comparison", "the same frequency"), "Answer: both labels appear with the same frequency") == 1.0
    # a short answer is not reduced, so it must equal the gold exactly
    assert score(_task("comparison", "more common"), "Answer: more common than") == 0.0
    assert score(_task("comparison", "more common"), "Answer: more common") == 1.0


def test_dates_parse_to_the_gold_date() -> None:
    # rule: the gold is a datetime; the answer scores 1 when dateutil parses it to that datetime
    gold = "2023-03-05"
    assert score(_task("date", gold), "Date: 2023-03-05") == 1.0
    # the parse keeps only what follows the last colon, so a time of day breaks the answer, as in the official code
    assert score(_task("date", gold), "Date: 2023-03-05 00:00:00") == 0.0
    assert score(_task("date", gold), "Date: March 5, 2023") == 1.0
    assert score(_task("date", gold), "Date: 03/05/2023") == 1.0
    assert score(_task("date", gold), "Date: March 6, 2023") == 0.0
    assert score(_task("date", gold), "Date: no idea") == 0.0
    # an answer without a day never matches a full date (the official code fills it from the run's date)
    assert score(_task("date", gold), "Date: March 2023") == 0.0


def _published_row(i: int, kind: str, answer: str, question: str) -> dict[str, object]:
    return {
        "id": i,
        "context_window_id": 0,
        "dataset": "trec_coarse",
        "context_len": 1024,
        "task_group": "group",
        "task": kind.lower(),
        "answer_type": f"ANSWER_TYPE.{kind}",
        "answer": answer,
        "question": question,
        "context_window_text": "Date: Mar 05, 2023 || User: 48213 || Instance: what is a pole?",
    }


# (answer type, gold as published, the model's hand-made reply, the score the official rules give)
PUBLISHED = [
    ("LABEL", "['entity']", "The most common label.\nLabel: entity", 1.0),
    ("NUMERIC", "[7]", "Answer: 5", 0.75**2),
    ("USER", "[48213]", "User: **48213**", 1.0),
    ("COMPARISON", "['more common']", "Answer: entity is more common than location", 1.0),
    ("DATE", "[datetime.date(2023, 3, 5)]", "Date: March 5, 2023", 1.0),
    ("DATE", "[datetime.date(2023, 3, 5)]", "Date: 2023-04-05", 0.0),
    # a tie publishes every tied label; the official scorer compares with the first one only
    ("LABEL", "['entity', 'location']", "Label: entity", 1.0),
    ("LABEL", "['entity', 'location']", "Label: location", 0.0),
    # month-year answers have no rule of their own: exact match
    ("MONTH_YEAR", "['March 2023']", "Answer: March 2023", 1.0),
    ("MONTH_YEAR", "['March 2023']", "Answer: Mar 2023", 0.0),
]


def test_published_file_golds_load_in_a_form_the_scorer_reads(tmp_path: Path) -> None:
    path = tmp_path / "oolong.jsonl"
    rows = [_published_row(i, kind, gold, f"q{i}") for i, (kind, gold, _, _) in enumerate(PUBLISHED)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tasks = load_oolong_file(path)
    assert [t.gold for t in tasks][:5] == ["entity", 7.0, 48213, "more common", "2023-03-05"]
    assert [t.meta["answer_type"] for t in tasks][:5] == ["label", "number", "user", "comparison", "date"]


def test_every_answer_type_scores_through_rlm_bench(tmp_path: Path) -> None:
    """Hand-made replies, served by a scripted model, go through the whole bench path and are scored."""
    path = tmp_path / "oolong.jsonl"
    rows = [_published_row(i, kind, gold, f"Question number {i}?") for i, (kind, gold, _, _) in enumerate(PUBLISHED)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    replies = {f"Question number {i}?": reply for i, (_, _, reply, _) in enumerate(PUBLISHED)}

    def reply(request: ChatRequest) -> str:
        return next(r for q, r in replies.items() if q in request.messages[-1]["content"])

    with ScriptedServer() as server:
        server.script("handmade", reply)
        results = run_bench(
            str(path),
            model="openai/handmade",
            concurrency=2,
            out_dir=tmp_path / "run",
            method="direct",
            api_base=server.base_url,
            api_key="x",
            progress=False,
        )
    by_id = {r.id: r for r in results}
    for i, (_, _, hand_made, expected) in enumerate(PUBLISHED):
        result = by_id[f"oolong-file-{i}"]
        assert result.score == pytest.approx(expected), (i, result.answer, result.parsed)
        assert result.answer == hand_made
    saved = json.loads((tmp_path / "run" / "results" / "oolong-file-4.json").read_text())
    assert saved["gold"] == "2023-03-05" and saved["parsed"] == "March 5, 2023" and saved["score"] == 1.0
