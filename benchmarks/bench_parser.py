"""Reply parser time against reply length, the reply fed in 4-character deltas as a stream arrives.

Three shapes of reply: `mixed` (prose and ```repl blocks, as models write them), `one block` (a
single long code block, which a parser rescanning the open block from its start handles in quadratic
time) and `prose` (long prose before the FINAL marker, which a parser rescanning the prose it has seen
handles in quadratic time). Each ends in a FINAL marker. A linear parser's time per MB stays flat as
the reply grows; the last column prints that ratio against the 10 KB reply of the same shape (1.0 is
linear, growing numbers are quadratic). The parse of a 1 MB reply must be well under a second.

    .venv/bin/python benchmarks/bench_parser.py [--sizes 10000,100000,1000000,10000000] [--chunk 4]
"""

from __future__ import annotations

import argparse
import time

from rlm.fences import CodeBlock, ReplyParser

UNIT = (
    "Looking at the context, the refund policy (section 4) mentions a 30-day window.\n"
    "Let me check the numbers:\n```repl\nhits = search(['refund', 'window'])\nprint(len(hits))\n```\n"
    "Some more reasoning about what the results mean, with (nested (parentheses)) here and there.\n"
)


SHAPES = {
    "mixed": ("", UNIT, "\n```\n"),
    "one block": ("```repl\n", "rows = [r for r in data if r.get('kind') == 'refund']  # (filter)\n", "\n```\n"),
    "prose": ("", "The policy text (section 4) says refunds are due within thirty days of purchase.\n", "\n"),
}


def reply_of(size: int, shape: str = "mixed") -> str:
    """A reply of about `size` characters of one shape, ending in a FINAL marker."""
    head, unit, tail = SHAPES[shape]
    return head + (unit * (size // len(unit) + 1))[:size] + tail + "FINAL(done)\n"


def parse_seconds(reply: str, chunk: int) -> tuple[float, int]:
    deltas = [reply[i : i + chunk] for i in range(0, len(reply), chunk)]
    parser = ReplyParser()
    started = time.perf_counter()
    events = [event for delta in deltas for event in parser.feed(delta)]
    events += parser.finish()
    seconds = time.perf_counter() - started
    return seconds, sum(isinstance(event, CodeBlock) for event in events)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--sizes", default="10000,100000,1000000,10000000")
    options.add_argument("--chunk", type=int, default=4)
    args = options.parse_args()
    print(f"{'shape':>9} {'reply':>10} {'deltas':>10} {'blocks':>7} {'parse s':>9} {'s per MB':>9} {'vs 10 KB':>9}")
    for shape in SHAPES:
        base = None
        for size in (int(s) for s in args.sizes.split(",")):
            reply = reply_of(size, shape)
            seconds, blocks = parse_seconds(reply, args.chunk)
            per_mb = seconds / (len(reply) / 1e6)
            base = base or per_mb
            deltas = -(-len(reply) // args.chunk)
            print(
                f"{shape:>9} {len(reply):>10,} {deltas:>10,} {blocks:>7,} {seconds:>9.3f} {per_mb:>9.3f} "
                f"{per_mb / base:>9.2f}"
            )


if __name__ == "__main__":
    main()
