"""`--context -`: standard input goes straight into the context's store, read once and never held whole."""

from __future__ import annotations

import io
import os
import threading
import tracemalloc

import pytest

from rlm.context import Context
from rlm.errors import ContextError


def test_a_stream_reads_like_the_same_bytes() -> None:
    data = "héllo\nwörld 東京\n".encode() * 1000
    assert Context.from_stream(io.BytesIO(data)) == Context.from_stdin_bytes(data) == data.decode()
    assert Context.from_stream(io.BytesIO(b"\xef\xbb\xbfabc")) == "abc"


def test_a_stream_is_checked_like_a_file() -> None:
    with pytest.raises(ContextError, match="empty"):
        Context.from_stream(io.BytesIO(b""))
    with pytest.raises(ContextError, match="binary"):
        Context.from_stream(io.BytesIO(b"ab\x00cd"))
    with pytest.raises(ContextError, match=r"not valid UTF-8.*offset 2"):
        Context.from_stream(io.BytesIO(b"ab\xffcd"))
    assert Context.from_stream(io.BytesIO(b"ab\xffcd"), errors="replace") == "ab\ufffdcd"


def test_a_large_pipe_is_never_held_whole_in_memory() -> None:
    size = 32 << 20
    read_end, write_end = os.pipe()

    def feed() -> None:
        with open(write_end, "wb") as out:
            line = b"a line of the context, piped in\n"
            for _ in range(size // len(line)):
                out.write(line)

    writer = threading.Thread(target=feed)
    writer.start()
    tracemalloc.start()
    try:
        with open(read_end, "rb") as stream:
            context = Context.from_stream(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        writer.join()
    assert len(context) == size // 32 * 32
    print(f"peak Python memory reading a {size >> 20} MB pipe: {peak / 2**20:.1f} MB")
    assert peak < size / 2  # read in windows into the store; reading it whole would hold all 32 MB
