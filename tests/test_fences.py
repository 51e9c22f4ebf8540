"""The streaming parser finds the same blocks and markers however the reply is split into deltas."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from rlm.fences import CodeBlock, FinalMarker, ReplyParser

REPLY = (
    "Let me look.\n```repl\nprint(len(context))\n```\nThen search:\n```repl\nx = '```'\nhits = search(['a'])\n```\n"
    "Not code:\n```python\nprint('ignored')\n```\nFINAL_VAR(hits)\n"
)


def parse(deltas: list[str]) -> list:
    parser = ReplyParser()
    events = [event for delta in deltas for event in parser.feed(delta)]
    return events + parser.finish()


def test_blocks_and_final_var_in_order() -> None:
    events = parse([REPLY])
    assert [type(e) for e in events] == [CodeBlock, CodeBlock, FinalMarker]
    assert events[0].code == "print(len(context))"
    assert events[1].code == "x = '```'\nhits = search(['a'])"
    assert (events[2].kind, events[2].value) == ("FINAL_VAR", "hits")


@given(st.lists(st.integers(min_value=1, max_value=len(REPLY)), max_size=30))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    deltas = [REPLY[a:b] for a, b in zip([0, *points], [*points, len(REPLY)], strict=True)]
    assert parse(deltas) == parse([REPLY])


def test_block_reported_as_soon_as_its_fence_line_ends() -> None:
    parser = ReplyParser()
    assert parser.feed("```repl\nx = 1\n```") == []  # could still become ```python
    assert [e.code for e in parser.feed("\nmore prose")] == ["x = 1"]


def test_final_with_nested_parentheses_and_quotes() -> None:
    events = parse(["Done.\nFINAL(f(x) = (a + b))\ntrailing"])
    assert events == [FinalMarker("FINAL", "f(x) = (a + b)", events[0].end)]


def test_final_inside_code_is_not_a_prose_marker() -> None:
    events = parse(["```repl\nFINAL(1)\n```\n"])
    assert [type(e) for e in events] == [CodeBlock]


def test_unclosed_block_is_never_run() -> None:
    assert parse(["```repl\nprint('cut off"]) == []


def test_unbalanced_final_takes_the_rest_at_the_end() -> None:
    events = parse(["FINAL(the answer is 42"])
    assert events[0].value == "the answer is 42"


# The reply parser as it was before it kept state between deltas: regular expressions over the whole
# text. It is the reference the linear parser must agree with.
OPEN_FENCE = re.compile(r"^```repl[ \t]*\n", re.MULTILINE)
CLOSE_FENCE = re.compile(r"^```[ \t]*(\n|$)", re.MULTILINE)
FINAL_START = re.compile(r"^[ \t]*(FINAL_VAR|FINAL)[ \t]*\(", re.MULTILINE)


def reference_events(text: str) -> list:
    """Events of a whole reply, found by searching the text with the protocol's regular expressions."""
    events: list = []
    pos, blocks = 0, 0
    while True:
        opening = OPEN_FENCE.search(text, pos)
        prose_end = opening.start() if opening else len(text)
        marker = FINAL_START.search(text, pos, prose_end)
        if marker is not None:
            depth, end, value = 1, prose_end, text[marker.end() : prose_end].strip()
            for i in range(marker.end(), prose_end):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                if depth == 0:
                    end, value = i + 1, text[marker.end() : i].strip()
                    value = value.strip("\"'") if marker.group(1) == "FINAL_VAR" else value
                    break
            events.append(FinalMarker(marker.group(1), value, end))
            pos = end
            continue
        if opening is None:
            return events
        close = CLOSE_FENCE.search(text, opening.end())
        if close is None:
            return events
        events.append(CodeBlock(text[opening.end() : close.start()].rstrip("\n"), blocks, close.end()))
        blocks, pos = blocks + 1, close.end()


PIECES = ["```repl", "```", "```python", "repl", "FINAL", "FINAL_VAR", "(", ")", "'", "x", " ", "\t", "\n", "\n\n"]


@given(st.lists(st.sampled_from(PIECES), max_size=40), st.lists(st.integers(min_value=1, max_value=200)))
def test_random_replies_in_random_chunks_match_the_whole_text_reference(parts: list[str], cuts: list[int]) -> None:
    reply = "".join(parts)
    points = sorted({cut for cut in cuts if cut < len(reply)})
    deltas = [reply[a:b] for a, b in zip([0, *points], [*points, len(reply)], strict=True)]
    assert parse(deltas) == reference_events(reply)


@given(st.lists(st.sampled_from(PIECES), max_size=40), st.integers(min_value=1, max_value=5))
def test_fixed_size_chunks_match_the_whole_text_reference(parts: list[str], size: int) -> None:
    reply = "".join(parts)
    assert parse([reply[i : i + size] for i in range(0, len(reply), size)]) == reference_events(reply)


def test_text_is_the_whole_reply_after_many_deltas() -> None:
    parser = ReplyParser()
    for char in REPLY:
        parser.feed(char)
    assert parser.text == REPLY
