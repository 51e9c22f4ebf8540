"""Ordinary model-style programs: all must run unchanged, in both modes, with state across cells."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest
from conftest import Repl

# (id, code, text the stdout must contain); the code is dedented before it runs
PROGRAMS = [
    (
        "class-with-methods",
        r"""
            class Counter2:
                def __init__(self):
                    self.n = 0
                    self.seen = []
                def add(self, x):
                    self.n += 1
                    self.seen.append(x)
                    return self
            c = Counter2().add('a').add('b')
            c.extra = 'ok'
            print(c.n, c.seen, c.extra)
        """,
        "2 ['a', 'b'] ok",
    ),
    (
        "print-in-function",
        r"""
            def report(items):
                for i, it in enumerate(items, start=1):
                    print(f'{i}. {it}')
            report(['x', 'y'])
        """,
        "1. x\n2. y",
    ),
    (
        "comprehensions",
        r"""
            sq = [i * i for i in range(5) if i % 2 == 0]
            d = {k: len(k) for k in ['ab', 'c']}
            s = {w[0] for w in ['ab', 'ac', 'b']}
            g = sum(x for x in range(4))
            print(sq, d, sorted(s), g)
        """,
        "[0, 4, 16] {'ab': 2, 'c': 1} ['a', 'b'] 6",
    ),
    (
        "fstrings",
        r"""
            x = 3.14159
            name = 'pi'
            print(f'{name!r:>6}|{x:.2f}|{x:>8.3f}|{10**6:,}|{{}}')
        """,
        "  'pi'|3.14|   3.142|1,000,000|{}",
    ),
    (
        "sorted-with-keys",
        r"""
            scores = {'a': 3, 'b': 7, 'c': 5}
            print(sorted(scores.items(), key=lambda kv: -kv[1]))
            print(sorted(['bb', 'a', 'ccc'], key=len, reverse=True), max(scores, key=scores.get))
        """,
        "[('b', 7), ('c', 5), ('a', 3)]\n['ccc', 'bb', 'a'] b",
    ),
    (
        "datetime",
        r"""
            from datetime import datetime, timedelta
            d = datetime.strptime('2024-03-01 10:30', '%Y-%m-%d %H:%M')
            print((d + timedelta(days=30)).strftime('%Y-%m-%d'), d.weekday(), d.isoformat())
        """,
        "2024-03-31 4 2024-03-01T10:30:00",
    ),
    (
        "regex",
        r"""
            import re
            pat = re.compile(r'(\w+)@(\w+)\.com', re.IGNORECASE)
            text = 'Mail A@X.com or b@y.com'
            print(pat.findall(text), [m.group(1) for m in pat.finditer(text)], re.sub(r'\d', '#', 'a1b22'))
            m = re.search(r'code is (\d+)', context)
            print(m.group(1), m.span()[0] > 0)
        """,
        "[('A', 'X'), ('b', 'y')] ['A', 'b'] a#b##\n4217 True",
    ),
    (
        "json",
        r"""
            import json
            data = json.loads('{"b": [1, 2], "a": null}')
            data['c'] = True
            print(json.dumps(data, sort_keys=True), json.dumps({'x': 1}, indent=2).count('\n'))
        """,
        '{"a": null, "b": [1, 2], "c": true} 2',
    ),
    (
        "collections",
        r"""
            from collections import Counter, defaultdict, deque, namedtuple
            words = context.split()
            top = Counter(words).most_common(2)
            groups = defaultdict(list)
            for w in words[:6]:
                groups[w[0]].append(w)
            q = deque(maxlen=2)
            q.extend([1, 2, 3])
            P = namedtuple('P', 'x y')
            p = P(1, y=2)
            print(top, dict(groups)['a'], list(q), p.x + p.y)
        """,
        "[('alpha', 50), ('beta', 50)] ['alpha', 'alpha'] [2, 3] 3",
    ),
    (
        "counter-augmented-items",
        r"""
            counts = {}
            for w in 'a b a c a'.split():
                counts[w] = counts.get(w, 0)
                counts[w] += 1
            totals = [0, 0]
            totals[1] += 5
            print(counts, totals)
        """,
        "{'a': 3, 'b': 1, 'c': 1} [0, 5]",
    ),
    (
        "itertools-functools",
        r"""
            import itertools, functools
            print(list(itertools.islice(itertools.count(3), 3)),
                  [k for k, _ in itertools.groupby('aabbc')], list(itertools.combinations('abc', 2))[:2],
                  functools.reduce(lambda a, b: a * b, [1, 2, 3, 4]))
            @functools.lru_cache(maxsize=None)
            def fib(n):
                return n if n < 2 else fib(n - 1) + fib(n - 2)
            print(fib(60))
        """,
        "[3, 4, 5] ['a', 'b', 'c'] [('a', 'b'), ('a', 'c')] 24\n1548008755920",
    ),
    (
        "chunking-context",
        r"""
            chunks = [context[i:i + 200] for i in range(0, len(context), 200)]
            hits = [i for i, c in enumerate(chunks) if 'secret' in c]
            print(len(chunks) > 5, len(hits) >= 1)
        """,
        "True True",
    ),
    (
        "exceptions",
        r"""
            class NotFound(Exception):
                pass
            def find(k, d):
                if k not in d:
                    raise NotFound(k)
                return d[k]
            try:
                find('z', {})
            except NotFound as e:
                print('missing', e)
            finally:
                print('done')
        """,
        "missing z\ndone",
    ),
    (
        "unpacking-and-walrus",
        r"""
            first, *rest = [1, 2, 3]
            (a, b), c = (4, 5), 6
            for k, (x, y) in {'p': (1, 2)}.items():
                print(k, x + y)
            if (n := len(rest)) > 1:
                print(first, rest, a + b + c, n)
        """,
        "p 3\n1 [2, 3] 15 2",
    ),
    (
        "closures-nonlocal-generators",
        r"""
            def make():
                total = 0
                def add(x):
                    nonlocal total
                    total += x
                    return total
                return add
            acc = make()
            acc(2)
            print(acc(3))
            def gen(n):
                for i in range(n):
                    yield i * 10
            g = gen(3)
            print(next(g), list(g))
        """,
        "5\n0 [10, 20]",
    ),
    (
        "classes-inheritance",
        r"""
            class Base:
                kind = 'base'
                def __init__(self, v):
                    self.v = v
                def describe(self):
                    return f'{self.kind}:{self.v}'
                def __lt__(self, other):
                    return self.v < other.v
            class Child(Base):
                kind = 'child'
                def describe(self):
                    return 'child ' + super().describe()
                @property
                def double(self):
                    return self.v * 2
                @staticmethod
                def unit():
                    return 1
            items = sorted([Child(3), Child(1)])
            print([i.describe() for i in items], items[0].double, Child.unit(), type(items[0]).__name__)
        """,
        "['child child:1', 'child child:3'] 2 1 Child",
    ),
    (
        "math-and-friends",
        r"""
            import math, statistics, heapq, bisect, textwrap, string
            from decimal import Decimal
            from fractions import Fraction
            print(math.sqrt(16), statistics.median([3, 1, 2]), heapq.nlargest(2, [5, 1, 9]),
                  bisect.bisect([1, 3, 5], 4))
            print(textwrap.shorten('a b c d e f g', width=9), Decimal('0.1') + Decimal('0.2'),
                  Fraction(1, 3) * 3, string.ascii_lowercase[:3])
        """,
        "4.0 2 [9, 5] 2\na b [...] 0.3 1 abc",
    ),
    (
        "random-seeded",
        r"""
            import random
            rng = random.Random(7)
            vals = [rng.randint(1, 6) for _ in range(3)]
            print(len(vals), all(1 <= v <= 6 for v in vals))
        """,
        "3 True",
    ),
    (
        "string-methods",
        r"""
            s = '  Hello, World  '
            print(s.strip().lower().replace('world', 'there'), '-'.join(['a', 'b']),
                  'x=%d y=%s' % (1, 'z'), '{} + {} = {}'.format(1, 2, 3), '{:>4}'.format('a'), s.split(','))
        """,
        "hello, there a-b x=1 y=z 1 + 2 = 3    a ['  Hello', ' World  ']",
    ),
    (
        "typing-annotations",
        r"""
            from typing import Dict, List, Optional
            def top(d: Dict[str, int], n: int = 1) -> List[str]:
                return sorted(d, key=d.get, reverse=True)[:n]
            best: Optional[str] = top({'a': 1, 'b': 2})[0]
            print(best)
        """,
        "b",
    ),
    (
        "while-break-continue",
        r"""
            i = 0
            out = []
            while True:
                i += 1
                if i % 2:
                    continue
                if i > 6:
                    break
                out.append(i)
            print(out)
        """,
        "[2, 4, 6]",
    ),
    (
        "echo-last-expression",
        r"""
            x = 40
            x + 2
        """,
        "42",
    ),
    (
        "print-star-args",
        r"""
            items = ['a', 'b']
            print(*items, sep=', ', end='!\n')
        """,
        "a, b!",
    ),
    (
        "match-statement",
        r"""
            class Kind:
                A = 'a'
            class Pt:
                def __init__(self, x, y):
                    self.x, self.y = x, y
            def describe(x):
                match x:
                    case {'type': Kind.A, 'v': v}:
                        return f'a {v}'
                    case [first, *others]:
                        return f'list {first} {len(others)}'
                    case Pt(x=0, y=y):
                        return f'on axis {y}'
                    case int() | float() as num if num > 0:
                        return 'pos'
                    case None:
                        return 'none'
                    case _:
                        return 'other'
            print(describe({'type': 'a', 'v': 1}), describe([1, 2, 3]), describe(Pt(0, 5)), describe(5), describe(None))
        """,
        "a 1 list 1 2 on axis 5 pos none",
    ),
    (
        "dunder-methods",
        r"""
            class Vec:
                def __init__(self, *xs): self.xs = list(xs)
                def __repr__(self): return f'Vec{tuple(self.xs)}'
                def __str__(self): return 'v' + ','.join(map(str, self.xs))
                def __len__(self): return len(self.xs)
                def __iter__(self): return iter(self.xs)
                def __getitem__(self, i): return self.xs[i]
                def __setitem__(self, i, v): self.xs[i] = v
                def __contains__(self, v): return v in self.xs
                def __eq__(self, o): return isinstance(o, Vec) and self.xs == o.xs
                def __hash__(self): return hash(tuple(self.xs))
                def __lt__(self, o): return self.xs < o.xs
                def __add__(self, o): return Vec(*[a + b for a, b in zip(self, o)])
                def __bool__(self): return bool(self.xs)
                def __call__(self, k): return [k * x for x in self]
            class Timer:
                def __enter__(self): return 'entered'
                def __exit__(self, *exc): return False
            v = Vec(1, 2)
            v[0] = 3
            with Timer() as t:
                print(repr(v + Vec(1, 1)), str(v), len(v), 2 in v, v == Vec(3, 2), sorted([v, Vec(0)])[0], v(2), t)
            print(len({v, Vec(3, 2)}), bool(Vec()), list(v))
        """,
        "Vec(4, 3) v3,2 2 True True v0 [6, 4] entered\n1 False [3, 2]",
    ),
    (
        "dataclasses",
        r"""
            from dataclasses import dataclass, field, asdict, astuple, replace, fields
            import dataclasses
            @dataclass(order=True)
            class Item:
                name: str
                qty: int = 0
                tags: list = field(default_factory=list)
                def __post_init__(self):
                    self.name = self.name.strip()
            a = Item(' pen ', 2)
            b = replace(a, qty=5)
            a.tags.append('x')
            print(a, asdict(a), astuple(b), [f.name for f in fields(Item)], a < b, dataclasses.is_dataclass(a))
            @dataclass(frozen=True)
            class P:
                x: int
            try:
                P(1).x = 2
            except dataclasses.FrozenInstanceError:
                print('frozen')
        """,
        "Item(name='pen', qty=2, tags=['x']) {'name': 'pen', 'qty': 2, 'tags': ['x']} ('pen', 5, ['x']) "
        "['name', 'qty', 'tags'] True True\nfrozen",
    ),
    (
        "namedtuple-api",
        r"""
            from collections import namedtuple
            Pt = namedtuple('Pt', 'x y', defaults=[0])
            p = Pt(1)
            print(p._asdict(), p._replace(y=5), Pt._fields, Pt._make([3, 4]), Pt._field_defaults)
        """,
        "{'x': 1, 'y': 0} Pt(x=1, y=5) ('x', 'y') Pt(x=3, y=4) {'y': 0}",
    ),
    (
        "moderately-deep-expressions",
        "s = 'a'" + " + 'a'" * 120 + "\nv = " + "[" * 40 + "]" * 40 + "\n"
        "d = " + "{'k': " * 30 + "1" + "}" * 30 + "\nprint(len(s), len(v), len(str(d)))",
        "121 1 ",
    ),
    (
        "answer-as-number",
        r"""
            answer['content'] = 42
            print('set')
        """,
        "set",
    ),
    (
        "dir-and-hasattr",
        r"""
            print('split' in dir('x'), hasattr('x', 'upper'), hasattr('x', '__class__'))
        """,
        "True True False",
    ),
]


@pytest.fixture(scope="module", params=["process", "inprocess"])
def both(request: pytest.FixtureRequest) -> Iterator[Repl]:
    driver = Repl(request.param)
    yield driver
    driver.close()


@pytest.mark.parametrize(("code", "expected"), [p[1:] for p in PROGRAMS], ids=[p[0] for p in PROGRAMS])
def test_program_runs(both: Repl, code: str, expected: str) -> None:
    outcome = both.ok(textwrap.dedent(code).strip())
    assert expected in outcome.stdout


def test_state_persists_across_cells(both: Repl) -> None:
    both.ok("memo = {'k': [1, 2]}\ndef twice(x):\n    return 2 * x")
    outcome = both.ok("memo['k'].append(twice(3))\nprint(memo)")
    assert outcome.stdout == "{'k': [1, 2, 6]}\n"
    assert {"memo", "twice"} <= set(outcome.variables)


def test_show_vars_answer_and_final(both: Repl) -> None:
    outcome = both.ok("result = 'forty-two'\nanswer['content'] = 'draft'\nSHOW_VARS()")
    assert "'result': 'str'" in outcome.stdout
    assert outcome.answer == {"content": "draft", "ready": False} and outcome.final is None
    assert both.ok("FINAL_VAR('result')").final == "forty-two"
    assert both.ok("FINAL_VAR(result)").final == "forty-two"
    assert both.ok("FINAL_VAR('the answer is 7')").final == "the answer is 7"
    outcome = both.ok("FINAL(6 * 7)")
    assert outcome.final == "42" and outcome.answer == {"content": "42", "ready": True}
    assert both.ok("x = 1").final is None
    missing = both.run("FINAL_VAR('nope')")
    assert missing.error_kind == "exception" and "no variable named 'nope'" in missing.error


def test_traceback_uses_cell_lines(both: Repl) -> None:
    both.ok("def divide(a, b):\n    return a / b")
    outcome = both.run("x = 1\ny = divide(x, 0)")
    assert outcome.error_kind == "exception"
    assert "<cell" in outcome.error and "line 2" in outcome.error and "in divide" in outcome.error
    assert "return a / b" in outcome.error and "ZeroDivisionError" in outcome.error
    assert "sandbox" not in outcome.error  # no host frames
    syntax = both.run("x = (1,")
    assert syntax.error_kind == "exception" and "SyntaxError" in syntax.error


def test_output_is_cut_head_and_tail(both: Repl) -> None:
    outcome = both.ok("for i in range(5000):\n    print(f'line {i}')")
    assert outcome.stdout.startswith("line 0\n") and outcome.stdout.endswith("line 4999\n")
    assert "characters of output cut" in outcome.stdout and len(outcome.stdout) < 2_200
    assert "output cut" in outcome.notice


def test_answer_number_is_written_out(both: Repl) -> None:
    outcome = both.ok("answer = {'content': 3.5, 'ready': False}")
    assert outcome.answer == {"content": "3.5", "ready": False} and outcome.notice is None
    both.ok("answer['content'] = ''")


def test_str_subclasses_reach_the_host_as_exact_str(both: Repl) -> None:
    """nothing the cell made crosses as a live object, not even a str subclass."""
    outcome = both.ok(
        "class S(str):\n    def strip(self):\n        while True:\n            pass\n"
        "llm_query(S('prompt'))\nllm_query_batched([S('a')])\nFINAL(S('done'))"
    )
    calls = both.bridge.calls[-2:]
    assert type(calls[0][1][0]) is str and type(calls[1][1][0][0]) is str
    assert type(outcome.final) is str and outcome.final == "done"
    assert type(outcome.answer["content"]) is str
