"""Shared test setup: litellm must never fetch its cost map, and tests share one scripted server."""

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before anything imports litellm: no network
os.environ["RLM_CACHE"] = "false"  # a cached reply would hide the scripted server; cache tests opt in

from collections.abc import Iterator

import pytest

from rlm.scripted import ScriptedServer


def shrink_context_windows(mp: pytest.MonkeyPatch) -> None:
    """Tiny index steps, blocks and scan windows in rlm.context, so small texts cross every boundary.
    A size is patched in every module of the package that holds it (each imported its own binding)."""
    from rlm.context import loaders, store, text, views

    sizes = {"K": 5, "BLOCK": 16, "WINDOW": 8, "_COUNT_WINDOW": 8}
    for module in (store, loaders, text, views):
        for name, value in sizes.items():
            if hasattr(module, name):
                mp.setattr(module, name, value)


@pytest.fixture(scope="session")
def _scripted_server_process() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def scripted_server(_scripted_server_process: ScriptedServer) -> Iterator[ScriptedServer]:
    """The session's scripted server with no scripts, no records and default pacing."""
    server = _scripted_server_process
    server.reset()
    server.ttft, server.tps = 0.0, None
    yield server
    server.reset()
