"""The shared context and native search against the plain-Python ways, with ratios in one run.

1. Aho-Corasick `search` of 100 keywords vs a Python `re` alternation of them (100 MB text).
2. RE2 `regex` vs `re` on the pathological `(a+)+$` over "a"*n + "b" (`re` runs in a subprocess
   that is killed at the cap).
3. Character slicing deep into a multi-byte UTF-8 file (1 GB) vs decoding up to that point.
4. Memory of N concurrent REPL sessions (`open_session(..., mode="process")`, the real workers) over
   the 1 GB context, each running a cell that reads all of it (`regex` and `context.count`), all at
   once: worker USS/PSS and anonymous peak (/proc) and the host's peak RSS, against the same sessions
   over a tiny context (so a worker's own overhead is not counted), vs one str copy per child;
   then the big round again with the regex alone, to show what `count` adds.

Files are generated under /tmp and deleted at the end.

    .venv/bin/python benchmarks/bench_context.py [--search-mb 100] [--big-mb 1024] [--children 32]
        [--re-cap 10]            # small run: --search-mb 20 --big-mb 256 --children 8
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rlm.context import Context, close
from rlm.search import regex, search
from sandbox import CellLimits, Session, open_session

LETTERS = "abcdefghijklmnopqrstuvwxy"  # no "z": only keywords contain it, so counts are exact
MIXED = ["é", "ü", "東京", "данные", "😀", "naïve", "ß"]


def mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def words_text(rng: random.Random, size: int, keywords: list[str], per_keyword: int) -> str:
    """Random words with every keyword inserted `per_keyword` times, about `size` characters."""
    vocab = ["".join(rng.choices(LETTERS, k=rng.randint(3, 9))) for _ in range(5000)]
    count = size // 7
    words = rng.choices(vocab, k=count)
    for kw in keywords:
        for i in rng.sample(range(count), per_keyword):
            words[i] = kw
    return " ".join(words)


def search_corpus(path: Path, size_mb: int) -> list[str]:
    """Write the search benchmark's text to `path` (the same for a given size); return its 100 keywords."""
    rng = random.Random(1)
    keywords = ["".join(rng.choices(LETTERS, k=4)) + "z" + "".join(rng.choices(LETTERS, k=4)) for _ in range(100)]
    path.write_text(words_text(rng, size_mb * 2**20, keywords, 50), encoding="utf-8")
    return keywords


def bench_aho_corasick(tmp: Path, size_mb: int) -> None:
    path = tmp / "search.txt"
    keywords = search_corpus(path, size_mb)
    ctx = Context.from_path(path)
    t0 = time.perf_counter()
    hits = search(keywords, ctx, max_hits=None)
    t_ac = time.perf_counter() - t0
    text = str(ctx)  # the plain-Python way needs the whole text as a str (not timed)
    pattern = re.compile("|".join(map(re.escape, keywords)))
    t0 = time.perf_counter()
    count = sum(1 for _ in pattern.finditer(text))
    t_re = time.perf_counter() - t0
    assert count == len(hits), (count, len(hits))
    t0 = time.perf_counter()
    folded = search(keywords, ctx, ignore_case=True, max_hits=None)
    t_fold = time.perf_counter() - t0
    assert len(folded) == count
    print(f"[1] {len(keywords)} keywords over {mb(path.stat().st_size)}: {len(hits):,} hits")
    print(f"    search (RE2 prefilter + Aho-Corasick): {t_ac:6.2f} s   Python re alternation: {t_re:6.2f} s")
    print(f"    ratio re / search: {t_re / t_ac:.1f}x (target >= 10x)")
    print(f"    search(ignore_case=True), Aho-Corasick alone: {t_fold:6.2f} s ({t_re / t_fold:.1f}x re)")
    close(ctx)
    path.unlink()


def time_re_capped(n: int, cap: float) -> float | None:
    """Seconds Python's re needs for (a+)+$ on "a"*n + "b", or None if it ran past the cap."""
    code = f"import re, time; s = 'a' * {n} + 'b'; t = time.perf_counter(); re.search(r'(a+)+$', s); "
    code += "print(time.perf_counter() - t)"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout)


def bench_pathological(cap: float) -> None:
    print(f"[2] (a+)+$ on 'a'*n + 'b' (re in a subprocess, killed after {cap:g} s)")
    for n in (18, 22, 26, 40):
        t_re = time_re_capped(n, cap)
        t0 = time.perf_counter()
        assert regex(r"(a+)+$", "a" * n + "b") == []
        t_re2 = time.perf_counter() - t0
        shown = f">{cap:g} s (killed)" if t_re is None else f"{t_re:.3f} s"
        ratio = f"{'>' if t_re is None else ''}{(cap if t_re is None else t_re) / t_re2:,.0f}x"
        print(f"    n={n:>2}: re {shown:>16}   RE2 {t_re2 * 1e6:8.0f} us   ratio {ratio}")
    big = "a" * 10_000_000 + "b"
    t0 = time.perf_counter()
    regex(r"(a+)+$", big)
    print(f"    RE2 stays linear: n=10,000,000 in {time.perf_counter() - t0:.3f} s")


def header(i: int) -> str:
    """The line that starts block `i` of the big file: fixed width, one `code=E...` per block."""
    return f"block {i:06d} code=E{i:06d}\n"


def write_big(path: Path, size_mb: int) -> tuple[str, int]:
    """A multi-byte UTF-8 file of `size_mb` MB, written as repeated blocks; returns a block and count."""
    rng = random.Random(2)
    pieces, size = [], 0
    while size < 4 * 2**20:
        line = " ".join(
            rng.choice(MIXED) if rng.random() < 0.2 else "".join(rng.choices(LETTERS, k=6)) for _ in range(12)
        )
        pieces.append(line + "\n")
        size += len(line.encode()) + 1
    block = "".join(pieces)
    data = block.encode()
    count = max(1, size_mb * 2**20 // len(data))
    with path.open("wb") as f:
        for i in range(count):
            f.write(header(i).encode())
            f.write(data)
    return block, count


def bench_slicing(ctx: Context, block: str, count: int, path: Path) -> None:
    rng = random.Random(3)
    per = len(block) + len(header(0))  # the header line + block, in characters
    t0 = time.perf_counter()
    rounds = 2000
    for _ in range(rounds):
        i = rng.randrange(count)
        assert str(ctx[i * per : i * per + 12]) == f"block {i:06d}"
    t_slice = (time.perf_counter() - t0) / rounds
    sample = min(64 * 2**20, path.stat().st_size)
    with path.open("rb") as f:
        data = f.read(sample)
    t0 = time.perf_counter()
    data.decode("utf-8", "ignore")
    t_scan = (time.perf_counter() - t0) * (path.stat().st_size / 2) / sample
    print(f"[3] slicing at random depths of a {mb(path.stat().st_size)} multi-byte file ({len(ctx):,} chars)")
    print(f"    ctx[i:i+12] + str(): {t_slice * 1e6:.1f} us   decoding to the middle: {t_scan * 1e3:,.0f} ms")
    print(f"    ratio scan / index: {t_scan / t_slice:,.0f}x")


CELL = 'hits = len(regex(r"code=E\\d+", max_hits=None)); xs = context.count("x"); print(hits, xs, len(context))'
REGEX_CELL = 'hits = len(regex(r"code=E\\d+", max_hits=None)); print(hits, len(context))'  # to split the figure


class NoBridge:
    """The trivial host bridge: the cell makes no sub-calls."""

    async def call(self, name: str, args: list, kwargs: dict) -> object:
        return ""


def proc_kb(pid: int | str, name: str) -> dict[str, int]:
    """The "Key: N kB" fields of /proc/PID/<name> (status, smaps_rollup), in bytes."""
    fields = {}
    with open(f"/proc/{pid}/{name}") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return fields


def uss(rollup: dict[str, int]) -> int:
    return rollup["Private_Clean"] + rollup["Private_Dirty"]


class AnonSampler(threading.Thread):
    """Samples the workers' summed anonymous RSS (cheap: /proc/PID/status) and keeps its peak."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.done = threading.Event()
        self.peak = 0

    def total(self) -> int:
        return sum(proc_kb(pid, "status")["RssAnon"] for pid in self.pids)

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, self.total())
        self.peak = max(self.peak, self.total())


@dataclass
class Round:
    seconds: float
    uss_before: int  # summed over the workers, sessions started, before the cell
    uss_after: int  # the same once every cell has finished (all sessions still open)
    pss_after: int
    anon_growth: int  # peak of the summed anonymous RSS during the cells, minus before
    page_tables: int  # summed VmPTE after the cells (kernel memory, not in RSS)
    host_peak: int  # the host's peak RSS over the round minus its RSS before


async def session_round(spec: dict, n: int, cell: str, expect: str) -> Round:
    """N process-mode sessions over `spec`, all running `cell` at once; memory read from /proc."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the host's peak RSS (VmHWM) to its current RSS
    host_before = proc_kb("self", "status")["VmRSS"]
    limits = CellLimits(timeout_s=600)  # 32 full scans share 2 cores: the default 60 s is about CPU, not memory
    opened = await asyncio.gather(
        *(open_session(spec, NoBridge(), limits, mode="process") for _ in range(n)), return_exceptions=True
    )
    sessions = [s for s in opened if isinstance(s, Session)]
    try:
        for s in opened:
            if isinstance(s, BaseException):
                raise s
        pids = [s.worker_pid for s in sessions]
        before = [proc_kb(pid, "smaps_rollup") for pid in pids]
        sampler = AnonSampler(pids)
        anon_before = sampler.total()
        sampler.start()
        t0 = time.perf_counter()
        outcomes = await asyncio.gather(*(s.run_cell(cell) for s in sessions))
        seconds = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
        after = [proc_kb(pid, "smaps_rollup") for pid in pids]
        page_tables = sum(proc_kb(pid, "status")["VmPTE"] for pid in pids)
        host_peak = proc_kb("self", "status")["VmHWM"] - host_before
    finally:
        await asyncio.gather(*(s.aclose() for s in sessions))
    for o in outcomes:
        assert o.error is None and o.stdout.strip() == expect, (o.error, o.stdout, expect)
    return Round(
        seconds,
        sum(map(uss, before)),
        sum(map(uss, after)),
        sum(r["Pss"] for r in after),
        sampler.peak - anon_before,
        page_tables,
        host_peak,
    )


def bench_memory(ctx: Context, block: str, count: int, path: Path, tmp: Path, n: int) -> None:
    size = path.stat().st_size
    tiny_path = tmp / "tiny.txt"
    tiny_path.write_text(header(0) + block[: block.index("\n", 4096) + 1], encoding="utf-8")
    tiny = Context.from_path(tiny_path)
    tiny_text = str(tiny)
    tiny_expect = f"{tiny_text.count('code=E')} {tiny_text.count('x')} {len(tiny)}"
    expect = f"{count} {count * block.count('x')} {len(ctx)}"
    small = asyncio.run(session_round(tiny.to_spec(), n, CELL, tiny_expect))
    big = asyncio.run(session_round(ctx.to_spec(), n, CELL, expect))
    big_regex = asyncio.run(session_round(ctx.to_spec(), n, REGEX_CELL, f"{count} {len(ctx)}"))
    close(tiny)
    tiny_path.unlink()
    width = 4 if max(block) > "\uffff" else 2 if max(block) > "\xff" else 1
    str_bytes = sys.getsizeof(block) + (len(ctx) - len(block)) * width  # the whole text decoded once

    def per(rnd: Round, field: str) -> str:
        return mb(getattr(rnd, field) / n)

    def peak(rnd: Round) -> int:  # summed worker USS at its peak (the sampler may miss a very short cell)
        return max(rnd.uss_after, rnd.uss_before + rnd.anon_growth)

    workers = max(0, peak(big) - peak(small))
    host = max(0, big.host_peak - small.host_peak)
    added = workers + host
    regex_only = max(0, peak(big_regex) - peak(small))
    print(f"[4] {n} concurrent REPL sessions (process mode) over the {mb(size)} file, all running at once:")
    print(f"    {CELL}")
    print(f"    ({big.seconds:.1f} s for the {n} cells; over a {len(tiny_text):,}-char context: {small.seconds:.2f} s)")
    print(f"    per worker, tiny context -> the {mb(size)} context:")
    print(f"      USS before the cell {per(small, 'uss_before')} -> {per(big, 'uss_before')}", end="")
    print(f"   after {per(small, 'uss_after')} -> {per(big, 'uss_after')}")
    print(f"      peak anonymous growth during the cell {per(small, 'anon_growth')} -> {per(big, 'anon_growth')}")
    print(f"      PSS after {per(small, 'pss_after')} -> {per(big, 'pss_after')} (its share of the one mapped copy)")
    print(f"    summed over {n} workers: PSS {mb(small.pss_after)} -> {mb(big.pss_after)};", end="")
    print(f" page tables (kernel, not in RSS) {mb(small.page_tables)} -> {mb(big.page_tables)}")
    print(f"    host peak RSS increase over the round: {mb(small.host_peak)} -> {mb(big.host_peak)}")
    print(f"    private memory the context adds: workers {mb(workers)} (peak USS, summed) + host {mb(host)}", end="")
    print(f" = {mb(added)} = {added / size:.2%} of the file (target < 10%), on top of its one shared copy")
    print(f"    the same cell without context.count (regex alone): workers {mb(regex_only)}", end="")
    print(f" = {regex_only / size:.2%} of the file ({big_regex.seconds:.1f} s)")
    print(f"    vs a str copy per child: {n} x {mb(str_bytes)} = {mb(n * str_bytes)}", end="")
    print(f" ({n * str_bytes / (size + added):,.0f}x the {mb(size + added)} used)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search-mb", type=int, default=100)
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--children", type=int, default=32)
    parser.add_argument("--re-cap", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="rlm-bench-context-") as d:
        tmp = Path(d)
        bench_aho_corasick(tmp, args.search_mb)
        bench_pathological(args.re_cap)
        path = tmp / "big.txt"
        t0 = time.perf_counter()
        block, count = write_big(path, args.big_mb)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        ctx = Context.from_path(path)
        t_open = time.perf_counter() - t0
        print(f"    (generated {mb(path.stat().st_size)} in {t_write:.1f} s; opened + indexed in {t_open:.1f} s)")
        bench_slicing(ctx, block, count, path)
        bench_memory(ctx, block, count, path, tmp, args.children)
        close(ctx)


if __name__ == "__main__":
    main()
