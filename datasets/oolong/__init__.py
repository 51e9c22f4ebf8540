"""OOLONG-synth windows and questions, built the way the official generator builds them.

The official generator is `src/data_gen/oolong-synth/` of the abertsch72/oolong repository
(`generate_dataset.py`, `example_constructor.py`, `task_constructors.py`, `datasets_loader.py`,
`utils.py`, `subsample.py`). This package is a new implementation of its rules (windows.py builds a
window, questions.py asks about it, and this module turns both into tasks):

* Window size: the number of instances is int((0.95 * length - PROMPT_TOKENS - 250) // PER_EXAMPLE_TOKENS)
  with the dataset's own estimates (trec_coarse 168 and 39, spam 142 and 57 tokens), not a token fill.
* Label mix: a temperature T drawn from 2..6, weights randint(1, 30) ** (1 / T) per label, softmax,
  counts rounded with the rounding error put on the first label. A label asked for more often than the
  pool holds it is drawn from copies of its instances, as the official generator does; `repeated` in a
  task's meta (and `python -m rlm_datasets`) gives the share of repeated lines per window.
* Users: 10% of n IDs (five digits) are common and carry 80% of the lines; dates are uniform over
  Feb 16, 2022 .. Jun 21, 2025. Each line is `Date: Mon DD, YYYY || User: ID || Instance: text`,
  between the dataset's description ("The following lines contain ...") and its recall line.
* Questions: the official three families in their order (counting, then user, then timeline), with
  their wording and answer formats: most/least common label (most common only when it beats every other
  label by more than 2% of the window), label-vs-label comparisons (only when the shares differ by more
  than 2% or are equal), per-label counts; the most and second most frequent user, the counting
  questions over a subset of users, the user with most instances of a label and "User A or User B";
  the most and second most frequent date, how many dates occur exactly n times, label frequency before
  versus after a date, counting questions within a month and within a date range, the first month one
  label beat another, in how many months one label beat another and was the single most common.
  The official user-subset draw takes min(1, ...) users, so that subset is a single user; kept as is.
* Per window the first 25 questions in that order are kept, as `subsample.py` keeps 25 per window
  (two windows per length and dataset make the published 50). The published split has this shape: its
  first trec_coarse 32K window carries 20 counting questions and then 5 user questions.

One deliberate difference: "how many dates are represented exactly n times" is answered over every
date of the window; the official code counts only among the 50 most frequent dates, which differs only
when more than 50 dates reach n. Golds are the first element of the official answer list, which is
what the official scorer compares against.
"""

from __future__ import annotations

import random

from rlm_datasets.oolong.questions import SCORER_TYPE, window_questions
from rlm_datasets.oolong.windows import build_window
from rlm_datasets.task import Task

PER_WINDOW = 25


def window_rng(pool_name: str, length: int, seed: int, index: int) -> random.Random:
    """The generator of window `index`: the same arguments give the same window and questions anywhere."""
    return random.Random(f"oolong:{pool_name}:{length}:{seed}:{index}")


def window_tasks(suite: str, pool_name: str, length: int, seed: int, index: int) -> list[Task]:
    """The first PER_WINDOW questions of window `index`, as the official subsampling keeps them."""
    rng = window_rng(pool_name, length, seed, index)
    window = build_window(pool_name, length, rng)
    return [
        Task(
            id=f"{suite}-{length}-s{seed}-w{index}-q{k:02d}",
            suite=suite,
            context=window.text,
            question=q.text,
            gold=q.gold,
            meta={
                "answer_type": SCORER_TYPE[q.answer_type],
                "official_answer_type": f"ANSWER_TYPE.{q.answer_type}",
                "official_task": f"TASK_TYPE.{q.task}",
                "family": q.family,
                "input_subset": q.input_subset,
                "dataset": pool_name,
                "length": length,
                "n_records": len(window.records),
                "repeated": round(window.repeated, 4),
                "records": window.records,
            },
        )
        for k, q in enumerate(window_questions(window, rng)[:PER_WINDOW])
    ]


def oolong_tasks(suite: str, pool_name: str, n: int, length: int, seed: int) -> list[Task]:
    """The first `n` questions over as many windows as needed."""
    tasks: list[Task] = []
    index = 0
    while len(tasks) < n:
        tasks.extend(window_tasks(suite, pool_name, length, seed, index))
        index += 1
    return tasks[:n]
