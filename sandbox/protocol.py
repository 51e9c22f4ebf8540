"""The worker channel: length-prefixed JSON over a Unix socket, blocking in the worker, async in the host.

Only plain data crosses (JSON, never pickle), and the host caps how much it will read, so a hostile
worker can send nothing but bounded, inert data.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from typing import Any

_HEADER = struct.Struct(">I")
PREFETCH_CALL = "llm_prefetch"  # a serial loop's prompts, sent ahead (sandbox/prefetch.py)
# the host calls a worker may ask for: anything else on the channel is refused
QUERY_NAMES = ("llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched", PREFETCH_CALL)


class ChannelClosed(Exception):
    """The other end went away (the worker died, or the host closed the session)."""


class ProtocolViolation(Exception):
    """The worker sent something that is not a well-formed, bounded message."""


def encode(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return _HEADER.pack(len(payload)) + payload


def decode(payload: bytes) -> dict[str, Any]:
    try:
        message = json.loads(payload.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolViolation(f"malformed message: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolViolation("a message must be an object with an 'op'")
    return message


class BlockingChannel:
    """The worker's end: plain blocking reads and writes on a socket file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: dict[str, Any]) -> None:
        data = memoryview(encode(message))
        while data:
            data = data[os.write(self.fd, data) :]

    def recv(self) -> dict[str, Any]:
        (size,) = _HEADER.unpack(self._read(_HEADER.size))
        return decode(self._read(size))

    def _read(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = os.read(self.fd, min(size, 1 << 20))
            if not chunk:
                raise ChannelClosed("the host closed the channel")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


class AsyncChannel:
    """The host's end: asyncio streams, so waiting for a worker never blocks the event loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_bytes: int) -> None:
        self.reader = reader
        self.writer = writer
        self.max_bytes = max_bytes

    async def send(self, message: dict[str, Any]) -> None:
        try:
            self.writer.write(encode(message))
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ChannelClosed(str(exc)) from None

    async def recv(self) -> dict[str, Any]:
        try:
            (size,) = _HEADER.unpack(await self.reader.readexactly(_HEADER.size))
            if size > self.max_bytes:
                raise ProtocolViolation(f"message of {size:,} bytes exceeds the {self.max_bytes:,} byte cap")
            return decode(await self.reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            raise ChannelClosed(str(exc)) from None

    def close(self) -> None:
        self.writer.close()
