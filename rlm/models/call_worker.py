"""The worker side of call workers (rlm/models/workers.py): litellm calls in processes of their own.

litellm spends ~3 ms of Python CPU per call and ~0.5 ms per streamed chunk; on one event loop a wide
fan-out queues behind it. A call worker runs `provider.complete` / `provider.stream` on its own loop
and sends back plain results, so that work spreads over the machine's cores.

A zygote process imports litellm once (~2 s); each worker is a fork of it (milliseconds) and lives as
long as the host process, so its clients and connection pools stay warm from run to run. Each run
hands a worker a channel of its own (a socket, sent over the worker's control socket); closing it
cancels that run's calls. Zygote and workers exit when the host closes their control socket.
Channels carry length-prefixed pickles: both ends are this package, never code from a model (the
sandbox's channel, which is, uses JSON).

host -> worker: ("env", environ) first, then ("complete" | "stream", id, Endpoint, messages, Timeouts),
                ("cancel", id)
worker -> host: ("ready", 0) once warm, then ("delta", id, text), ("done", id, Completion),
                ("error", id, ProviderError, Completion | None)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from rlm.errors import ProviderError

HEADER = struct.Struct("!I")


def encode(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    message: tuple[Any, ...] = pickle.loads(await reader.readexactly(size))
    return message


def zygote(fd: int) -> None:
    """The entry of the call workers' fork server (rlm/forkserver.py): import litellm once, then fork
    one worker per request; each serves the control socket it was given until the host hangs up."""
    import rlm.models.provider  # noqa: F401 - imported once here, for every forked worker
    from rlm.forkserver import serve
    from rlm.loop import loop_factory, run
    from rlm.models.pricing import litellm, own_process

    own_process()
    litellm()  # the import, and gc.freeze: forked workers share the frozen heap
    loop_factory()  # imports uvloop here too, once
    serve(fd, lambda control: run(_worker(socket.socket(fileno=control))))


async def _worker(control: socket.socket) -> None:
    """A worker's life: serve each channel the host sends, until it closes the control socket."""
    loop = asyncio.get_running_loop()
    hung_up: asyncio.Future[None] = loop.create_future()
    channels: set[asyncio.Task[None]] = set()
    control.setblocking(False)

    def on_control() -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(control, 16, 4)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data and not fds:
            loop.remove_reader(control.fileno())
            if not hung_up.done():
                hung_up.set_result(None)
            return
        for fd in fds:
            task = loop.create_task(_serve(socket.socket(fileno=fd), warm))
            channels.add(task)
            task.add_done_callback(channels.discard)

    warm = loop.create_task(_warm_up())
    loop.add_reader(control.fileno(), on_control)
    try:
        await hung_up
    finally:
        for task in [warm, *channels]:
            task.cancel()
        await asyncio.gather(warm, *channels, return_exceptions=True)


async def _warm_up() -> None:
    """Walk litellm's call path once (a mocked reply, nothing sent) before saying ready. A fork shares
    the zygote's memory until it writes to it, and the first calls write to much of litellm's heap:
    those page copies (~0.5 s) then happen here, while the host still calls in-process."""
    from rlm.models.pricing import litellm

    request: dict[str, Any] = {"model": "openai/warm-up", "messages": [{"role": "user", "content": "hi"}]}
    request |= {"mock_response": "ok", "api_key": "none", "api_base": "http://127.0.0.1:9/v1"}
    with contextlib.suppress(Exception):
        await litellm().acompletion(**request)
        async for _chunk in await litellm().acompletion(**request, stream=True):
            pass


async def _serve(channel: socket.socket, warm: asyncio.Task[None]) -> None:
    """One run's channel: say ready once warm, answer its calls until the host closes it, then cancel
    what is left."""
    from rlm.models import provider

    reader, writer = await asyncio.open_unix_connection(sock=channel)
    try:
        _kind, environ = await read_message(reader)
    except (asyncio.IncompleteReadError, ConnectionError):  # the run ended before it began
        writer.close()
        return
    os.environ.clear()
    os.environ.update(environ)  # the host's environment now (keys set since the worker started)
    await asyncio.shield(warm)
    calls: dict[int, asyncio.Task[None]] = {}

    def send(message: tuple[Any, ...]) -> None:
        if not writer.is_closing():
            writer.write(encode(message))

    async def complete(
        call_id: int, endpoint: provider.Endpoint, messages: list[dict[str, Any]], timeouts: provider.Timeouts
    ) -> None:
        try:
            send(("done", call_id, await provider.complete(endpoint, messages, timeouts)))
        except ProviderError as error:
            send(("error", call_id, error, None))
        except Exception as error:  # reported to the host, never lost
            send(("error", call_id, _unexpected(endpoint, error), None))

    async def stream(
        call_id: int, endpoint: provider.Endpoint, messages: list[dict[str, Any]], timeouts: provider.Timeouts
    ) -> None:
        finished: list[Any] = []
        try:
            async with contextlib.aclosing(provider.stream(endpoint, messages, finished.append, timeouts)) as deltas:
                async for delta in deltas:
                    send(("delta", call_id, delta))
            send(("done", call_id, finished[0]))
        except ProviderError as error:  # with what was generated before it broke, for the budget
            send(("error", call_id, error, finished[0] if finished else None))
        except Exception as error:
            send(("error", call_id, _unexpected(endpoint, error), finished[0] if finished else None))

    async def answer(handler: Callable[..., Awaitable[None]], call_id: int, *request: Any) -> None:
        try:
            await handler(call_id, *request)
        finally:
            calls.pop(call_id, None)

    handlers = {"complete": complete, "stream": stream}
    send(("ready", 0))
    try:
        while True:
            try:
                kind, call_id, *rest = await read_message(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if kind == "cancel":
                if task := calls.get(call_id):
                    task.cancel()  # closes the HTTP stream: the provider sees the disconnect
                continue
            calls[call_id] = asyncio.create_task(answer(handlers[kind], call_id, *rest))
    finally:
        for task in list(calls.values()):
            task.cancel()
        await asyncio.gather(*calls.values(), return_exceptions=True)
        writer.close()


def _unexpected(endpoint: Any, error: Exception) -> ProviderError:
    return ProviderError(f"{endpoint.model}: call worker failed: {type(error).__name__}: {error}", model=endpoint.model)
