"""S-NIAH: one needle in a haystack, built the way RULER's `niah` generator builds its single-needle tasks.

What follows RULER (NVIDIA/RULER `scripts/data/synthetic/niah.py` and its task table), rewritten here:

* the needle "One of the special magic {numbers|uuids} for {key} is: {value}." with the key an
  adjective-noun pair from wonderwords' word lists (shipped in `data/`, see `data/SOURCE.md`) and the
  value a 7-digit number or a UUID;
* the three single-needle variants: `noise` (niah_single_1: the five-sentence noise text repeated, one
  sentence per line, the needle at a uniformly drawn line), `essay` (niah_single_2) and `essay-uuid`
  (niah_single_3), where the needle goes at a sentence boundary at one of RULER's 40 fixed depths,
  round(linspace(0, 100, 40)) percent, i.e. before sentence int(n_sentences * depth / 100);
* the template in its singular wording (RULER turns "Some ... are all ... numbers" into "A ... is ...
  number" when one value is asked for), with the question after the context;
* the length budget: the whole prompt plus the value plus 128 tokens for the reply fits the nominal
  length (RULER grows the haystack until that no longer holds).

Two deliberate differences, because rlm works offline over a chat API: the essay haystack is seeded
essay-like prose made here, since RULER's Paul Graham essays cannot be redistributed; and RULER's answer
prefix ("The special magic number for X mentioned in the provided text is"), which it places after the
chat template as the start of the model's turn, cannot be pre-filled through the OpenAI chat API, so it is
kept in `meta` only. Scoring is RULER's string_match_all (the share of values found in the reply).
"""

from __future__ import annotations

import gzip
import random
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rlm_datasets.task import Task

from rlm.errors import ConfigError
from rlm.tokens import count_tokens

LENGTHS = (8192, 16384, 32768, 65536, 131072, 262144)
FIXED_LENGTH = 80_000
TOKENS_TO_GENERATE = 128  # RULER's reply allowance for niah, kept out of the haystack budget
DEPTHS = tuple(round(100 * i / 39) for i in range(40))  # RULER: np.round(np.linspace(0, 100, 40))
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = "One of the special magic {kind}s for {key} is: {value}."
INTRO = (
    "A special magic {kind} is hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {kind} afterwards.\n"
)
QUESTION = "What is the special magic {kind} for {key} mentioned in the provided text?"
ANSWER_PREFIX = "The special magic {kind} for {key} mentioned in the provided text is"
_DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Variant:
    """One RULER single-needle configuration."""

    ruler_task: str
    haystack: str  # "noise" or "essay"
    value_kind: str  # "number" or "uuid"


VARIANTS = {
    "noise": Variant("niah_single_1", "noise", "number"),
    "essay": Variant("niah_single_2", "essay", "number"),
    "essay-uuid": Variant("niah_single_3", "essay", "uuid"),
}


@cache
def key_words(name: str) -> tuple[str, ...]:
    """RULER's key vocabulary ('adjectives' or 'nouns'), deduplicated and sorted as its generator does."""
    with gzip.open(_DATA / f"ruler_{name}.txt.gz", "rt", encoding="utf-8") as f:
        return tuple(sorted({line.strip() for line in f if line.strip()}))


def make_key(rng: random.Random) -> str:
    """An adjective-noun key such as 'hollow-lantern', drawn uniformly from RULER's word pairs."""
    return f"{rng.choice(key_words('adjectives'))}-{rng.choice(key_words('nouns'))}"


def make_value(kind: str, rng: random.Random) -> str:
    if kind == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return str(rng.randint(1_000_000, 9_999_999))


# Essay-like filler: short declarative sentences from a seeded grammar, so the needle is the only one of its
# kind and nothing has to be downloaded.
_SUBJECTS = (
    "the committee",
    "a careful reader",
    "the old mill",
    "our small team",
    "the river town",
    "every founder",
    "the night shift",
    "a patient teacher",
    "the harbor crew",
    "most investors",
    "the village council",
    "a junior engineer",
    "the travelling band",
    "the library staff",
    "an early customer",
    "the orchard owner",
)
_VERBS = (
    "revisited",
    "questioned",
    "rebuilt",
    "described",
    "ignored",
    "measured",
    "praised",
    "borrowed",
    "sketched",
    "postponed",
    "defended",
    "simplified",
    "tested",
    "catalogued",
    "shared",
    "misjudged",
)
_OBJECTS = (
    "the quarterly plan",
    "an unfinished bridge",
    "the spring harvest",
    "a forgotten letter",
    "the shipping schedule",
    "a modest proposal",
    "the winter budget",
    "an honest mistake",
    "the map of the valley",
    "a list of small habits",
    "the rules of the game",
    "a borrowed ladder",
    "the weekly market",
    "a stubborn engine",
    "the choir's repertoire",
    "an argument about rain",
)
_TAILS = (
    "before the first frost",
    "without telling anyone",
    "while the tea went cold",
    "for the third time",
    "after a long debate",
    "with more patience than usual",
    "as the lamps came on",
    "in a hurry",
    "because nobody else would",
    "during the slow season",
    "with surprising care",
    "on a quiet morning",
)
_CLOSERS = (
    "Nobody remembers why.",
    "It seemed wise at the time.",
    "The results were mixed.",
    "Someone wrote it down.",
    "Most people approved.",
    "The lesson stuck.",
    "It rained all week.",
)


@cache
def _tokens(piece: str) -> int:
    return count_tokens(" " + piece)


def _sentence(rng: random.Random) -> str:
    s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}."
    return s[0].upper() + s[1:]


def _essay(rng: random.Random, budget: int) -> list[str]:
    sentences: list[str] = []
    used = 0
    while True:
        s = _sentence(rng) if rng.random() >= 0.2 else rng.choice(_CLOSERS)
        cost = _tokens(s)
        if used + cost > budget:
            return sentences
        sentences.append(s)
        used += cost


def _noise(budget: int) -> list[str]:
    per_line = count_tokens(f"{NOISE}\n{NOISE}") - count_tokens(NOISE)
    return [NOISE] * max(budget // per_line, 1)


def haystack_task(suite: str, length: int, seed: int, index: int, variant: str = "essay") -> Task:
    """A RULER-style single-needle task whose prompt, value and reply allowance fit in `length` tokens."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown S-NIAH variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    spec = VARIANTS[variant]
    rng = random.Random(f"sniah:{variant}:{length}:{seed}:{index}")
    kind = spec.value_kind
    key = make_key(rng)
    value = make_value(kind, rng)
    needle = NEEDLE.format(kind=kind, key=key, value=value)
    intro, question = INTRO.format(kind=kind), QUESTION.format(kind=kind, key=key)
    fixed = count_tokens(f"{intro}\n\n{question} {value}") + _tokens(needle)
    budget = length - TOKENS_TO_GENERATE - fixed
    noise = spec.haystack == "noise"
    pieces = _noise(budget) if noise else _essay(rng, budget)
    # RULER: a noise needle goes before a uniformly drawn line; an essay needle at one of the 40 depths.
    depth = 100 * rng.randrange(len(pieces)) / len(pieces) if noise else rng.choice(DEPTHS)
    while True:  # per-piece counts are close, not exact: trim until the whole prompt fits
        at = int(len(pieces) * depth / 100)
        body = ("\n" if noise else " ").join([*pieces[:at], needle, *pieces[at:]])
        over = count_tokens(f"{intro}{body}\n\n{question} {value}") + TOKENS_TO_GENERATE - length
        if over <= 0 or not pieces:
            break
        pieces = pieces[: -(over // 8 + 1)]
    return Task(
        id=f"{suite}-{length}-s{seed}-{index:03d}",
        suite=suite,
        context=intro + body,
        question=question,
        gold=[value],
        meta={
            "answer_type": "contains",
            "length": length,
            "variant": variant,
            "ruler_task": spec.ruler_task,
            "depth": round(depth, 1),
            "key": key,
            "answer_prefix": ANSWER_PREFIX.format(kind=kind, key=key),
        },
    )


def sniah_tasks(suite: str, n: int, lengths: tuple[int, ...], seed: int, variant: str = "essay") -> list[Task]:
    """`n` tasks, cycling through `lengths` so a sweep covers every size evenly."""
    return [haystack_task(suite, lengths[i % len(lengths)], seed, i, variant) for i in range(n)]
