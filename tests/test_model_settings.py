"""The model layer's settings as users give them (environment, flags) reaching every call, and the
API key they carry never shown: not in a repr, an event, a trace, an error or a result."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rlm.cli import main
from rlm.config import resolve_settings
from rlm.errors import ConfigError, ProviderError
from rlm.models.provider import Endpoint
from rlm.scripted import ScriptedServer
from rlm.types import CallOrigin, Role
from tests.gateways import ASK, make_gateway, to


def test_model_layer_settings_from_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("RLM_FALLBACKS", "openai/a=openai/b,openai/c;openai/d=openai/e")
    monkeypatch.setenv("RLM_CACHE", "off")
    monkeypatch.setenv("RLM_LOCAL_ONLY", "1")
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path))
    settings = resolve_settings()
    assert settings.models.fallbacks == {"openai/a": ["openai/b", "openai/c"], "openai/d": ["openai/e"]}
    assert (settings.cache.enabled, settings.models.local_only, settings.cache.dir) == (False, True, str(tmp_path))
    monkeypatch.setenv("RLM_FALLBACKS", "openai/a")
    with pytest.raises(ConfigError, match="MODEL=FALLBACK"):
        resolve_settings()


def test_temperature_from_settings_reaches_every_call(scripted_server: ScriptedServer, monkeypatch) -> None:
    from rlm.scripted.demo import DEMO_QUESTION, demo_rlm, make_demo_log, root_policy, sub_policy

    seen: list[tuple[str, float | None]] = []

    def recorded(policy):
        return lambda request: (seen.append((request.model, request.temperature)), policy(request))[1]

    scripted_server.script("scripted-root", recorded(root_policy))
    scripted_server.script("scripted-sub", recorded(sub_policy))
    monkeypatch.setenv("RLM_TEMPERATURE", "0.25")
    engine = demo_rlm(scripted_server)
    assert engine.settings.models.temperature == 0.25
    assert engine.query(make_demo_log(500), DEMO_QUESTION).ok
    assert {model for model, _ in seen} == {"scripted-root", "scripted-sub"}
    assert {temperature for _, temperature in seen} == {0.25}


def test_temperature_flag(monkeypatch) -> None:
    captured: dict[str, Any] = {}

    class Captured(Exception):
        pass

    def fake_rlm(**options: Any) -> None:
        captured.update(options)
        raise Captured

    monkeypatch.setattr("rlm.api.RLM", fake_rlm)
    result = CliRunner().invoke(main, ["query", "q", "--model", "openai/x", "--temperature", "0.4"])
    assert isinstance(result.exception, Captured) and captured["temperature"] == 0.4


def test_no_api_key_in_reprs_events_traces_or_results(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    from rlm.scripted.demo import DEMO_QUESTION, demo_rlm, install_demo, make_demo_log

    secret = "sk-SECRET-XYZ"
    install_demo(scripted_server)
    engine = demo_rlm(scripted_server, api_key=secret, fallbacks={"openai/scripted-sub": ["openai/m-missing"]})
    trace = tmp_path / "trace.jsonl"
    result = engine.query(make_demo_log(500), DEMO_QUESTION, trace=trace)
    assert result.ok
    gateway = make_gateway(scripted_server.base_url, policy=to("openai/m-missing", scripted_server.base_url))
    with pytest.raises(ProviderError) as failed:  # the server has no script for it: an error reply
        asyncio.run(gateway.complete(ASK, CallOrigin((), Role.SUB)))
    seen = [
        trace.read_text(),
        json.dumps(result.to_dict(trajectory=True), default=str),
        repr(result),
        repr(engine.settings),
        repr(Endpoint("openai/x", "http://127.0.0.1:1/v1", secret)),
        str(failed.value),
        json.dumps(gateway.events.trajectory, default=str),
    ]
    assert not [text for text in seen if "SECRET" in text]
