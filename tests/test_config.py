"""Settings: flags over RLM_* variables over the config file, with clear messages for bad values."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

from rlm.config import Settings, resolve_settings
from rlm.errors import ConfigError


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("RLM_MODEL", "RLM_SUB_MODEL", "RLM_MAX_COST", "RLM_MODEL_LIMITS", "RLM_CACHE"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config.toml"
    monkeypatch.setenv("RLM_CONFIG", str(config))
    return config


def test_precedence_flag_then_environment_then_file(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolated.write_text('model = "from-file"\nsub_model = "sub-from-file"\nmax_cost = 1.5\n')
    monkeypatch.setenv("RLM_MODEL", "from-env")
    settings = resolve_settings(max_cost=None)
    assert (settings.model, settings.sub_model, settings.max_cost) == ("from-env", "sub-from-file", 1.5)
    assert resolve_settings(model="from-flag").model == "from-flag"


def test_model_limits_from_the_environment_and_the_file(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_MODEL_LIMITS", "openai/a=rpm:500,tpm:9000;ollama/b=max_in_flight:2")
    assert resolve_settings().model_limits == {"openai/a": {"rpm": 500, "tpm": 9000}, "ollama/b": {"max_in_flight": 2}}
    monkeypatch.delenv("RLM_MODEL_LIMITS")
    isolated.write_text('[model_limits]\n"openai/a" = { rpm = 60 }\n')
    assert resolve_settings().model_limits == {"openai/a": {"rpm": 60}}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RLM_MAX_COST", "two dollars", "must be a number"),
        ("RLM_CACHE", "maybe", "must be true or false"),
        ("RLM_MODEL_LIMITS", "openai/a=rpm", "LIMIT:N"),
        ("RLM_MODEL_LIMITS", "openai/a=speed:3", "the limits are max_in_flight, rpm, tpm"),
        ("RLM_CALL_WORKERS", "-1", "call_workers must be 0"),
        ("RLM_CALL_WORKERS", "three", "call_workers must be a whole number, got 'three'"),
    ],
)
def test_bad_values_name_their_source(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message):
        resolve_settings()


def test_a_broken_config_file_is_named(isolated: Path) -> None:
    isolated.write_text("model = [unclosed")
    with pytest.raises(ConfigError, match=str(isolated)):
        resolve_settings()


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("model", "openai/gpt-5", "openai/gpt-5"),  # str | None
        ("model", "none", None),
        ("max_iterations", " 7 ", 7),  # int
        ("max_cost", "2.5", 2.5),  # float | None
        ("max_tokens", "", None),  # int | None
        ("cell_timeout", "90", 90.0),  # float
        ("cache", "off", False),  # bool
        ("local_only", "YES", True),
        ("fallbacks", "a=b,c;d=e", {"a": ["b", "c"], "d": ["e"]}),  # dict[str, list[str]] | None
        ("model_limits", "a=rpm:5", {"a": {"rpm": 5}}),  # dict[str, dict[str, int]] | None
        ("allowed_models", "x,y", "x,y"),  # str | list[str] | None: the text, split where it is used
    ],
)
def test_environment_text_becomes_the_fields_type(
    monkeypatch: pytest.MonkeyPatch, name: str, text: str, value: object
) -> None:
    monkeypatch.setenv(f"RLM_{name.upper()}", text)
    got = getattr(resolve_settings(), name)
    assert got == value and type(got) is type(value)


def test_none_is_refused_where_a_field_cannot_be_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_MAX_ITERATIONS", "none")
    with pytest.raises(ConfigError, match=r"\$RLM_MAX_ITERATIONS: max_iterations must be a whole number, got 'none'"):
        resolve_settings()


def test_every_field_type_has_a_conversion() -> None:
    """A field of a new type fails here rather than being cast by the wrong converter at run time."""
    hints = get_type_hints(Settings)
    for spec in fields(Settings):
        options = get_args(hints[spec.name]) or (hints[spec.name],)
        known = {str, int, float, bool, type(None), list[str], dict[str, list[str]], dict[str, dict[str, int]]}
        assert set(options) <= known, f"{spec.name}: {hints[spec.name]}"
