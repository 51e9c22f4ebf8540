"""Running the `rlm serve` application: bound by the CLI until stopped, or in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rlm.serve.app import RLMService
from rlm.serve.options import ServeOptions

if TYPE_CHECKING:
    from rlm.api import RLM


def build_engine(engine_options: dict[str, Any]) -> RLM:
    from rlm.api import RLM

    return RLM(**engine_options)


async def start_site(service: RLMService, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Bind and serve; returns the runner (for cleanup) and the bound port (port 0 picks a free one)."""
    # handler_cancellation: a client that disconnects cancels its handler, and so its run
    runner = web.AppRunner(service.app(), handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


async def serve_forever(service: RLMService, host: str, port: int, announce: Callable[[str], None]) -> None:
    runner, bound = await start_site(service, host, port)
    try:
        shown = f"[{host}]" if ":" in host else host
        announce(f"rlm serve: http://{shown}:{bound}/v1 serving models {', '.join(service.model_names)}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class BackgroundServer:
    """The server on 127.0.0.1 in a thread with its own event loop: for tests, benchmarks, notebooks."""

    def __init__(self, engine: RLM, options: ServeOptions | None = None, *, port: int = 0) -> None:
        self.service = RLMService(engine, options or ServeOptions())
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> BackgroundServer:
        ready, failure = threading.Event(), []

        async def main() -> None:
            try:
                runner, self.port = await start_site(self.service, "127.0.0.1", self._port)
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        self._thread = threading.Thread(target=lambda: asyncio.run(main()), name="rlm-serve", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join()
