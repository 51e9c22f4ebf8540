"""`python -m rlm_datasets`: each generated OOLONG window's size, tokens, label mix and repeated lines.

The official window sizing asks for more instances of a frequent label than a pool may hold and then
repeats instances; this shows how often that happens for a given length and seed.
"""

from __future__ import annotations

import argparse
from collections import Counter

from rlm_datasets.oolong import window_rng
from rlm_datasets.oolong.windows import SIZING, build_window

from rlm.tokens import count_tokens


def main(argv: list[str] | None = None) -> None:
    """Print one line per window: lines, tokens, share of repeated lines and label counts."""
    parser = argparse.ArgumentParser(prog="python -m rlm_datasets", description=main.__doc__)
    parser.add_argument("--pool", default="trec_coarse", choices=sorted(SIZING))
    parser.add_argument("--length", type=int, default=131072, help="nominal window length in tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--windows", type=int, default=4)
    args = parser.parse_args(argv)
    for index in range(args.windows):
        w = build_window(args.pool, args.length, window_rng(args.pool, args.length, args.seed, index))
        mix = dict(Counter(r.label for r in w.records).most_common())
        print(
            f"{args.pool} {args.length} seed {args.seed} window {index}: {len(w.records)} lines, "
            f"{count_tokens(w.text)} tokens, {w.repeated:.1%} repeated lines; labels {mix}"
        )


if __name__ == "__main__":
    main()
