"""Settings: flags over RLM_* variables over the config file, with clear messages for bad values."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import FrozenInstanceError, fields
from pathlib import Path
from typing import get_args, get_type_hints

import pytest
from click.testing import CliRunner

from rlm.budget import Limits
from rlm.cli import main
from rlm.config import DEFAULT_MAX_CALLS, DEFAULTS, SETTINGS, Settings, resolve_settings
from rlm.context import Context
from rlm.engine import EngineSettings
from rlm.errors import ConfigError
from rlm.models.cache import ResponseCache
from rlm.models.provider import Timeouts
from rlm.scheduler import ModelLimits
from sandbox.limits import CellLimits


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
    assert (settings.models.model, settings.models.sub_model, settings.limits.max_cost) == (
        "from-env",
        "sub-from-file",
        1.5,
    )
    assert resolve_settings(model="from-flag").models.model == "from-flag"


def test_model_limits_from_the_environment_and_the_file(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_MODEL_LIMITS", "openai/a=rpm:500,tpm:9000;ollama/b=max_in_flight:2")
    limits = resolve_settings().limits.model_limits
    assert limits == {"openai/a": {"rpm": 500, "tpm": 9000}, "ollama/b": {"max_in_flight": 2}}
    monkeypatch.delenv("RLM_MODEL_LIMITS")
    isolated.write_text('[model_limits]\n"openai/a" = { rpm = 60 }\n')
    assert resolve_settings().limits.model_limits == {"openai/a": {"rpm": 60}}


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


def test_a_config_file_key_that_is_no_setting_is_named_with_what_it_may_mean(isolated: Path) -> None:
    isolated.write_text('model = "m"\nmax_cots = 1.0\nflavour = "x"\n')
    with pytest.raises(ConfigError) as raised:
        resolve_settings()
    assert str(raised.value) == f"{isolated}: unknown settings: flavour; max_cots (did you mean max_cost?)."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_cost = [1]", "max_cost must be a number, got [1]"),
        ("max_iterations = 7.5", "max_iterations must be a whole number, got 7.5"),
        ("max_iterations = true", "max_iterations must be a whole number, got True"),
        ("cache = 1", "cache must be true or false, got 1"),
        ('fallbacks = { "a" = "b" }', "fallbacks must be a table of models"),
        ('allowed_models = ["x", 2]', "allowed_models must be text or a list of text"),
    ],
)
def test_a_config_file_value_of_the_wrong_type_is_named(isolated: Path, text: str, message: str) -> None:
    isolated.write_text(text + "\n")
    with pytest.raises(ConfigError, match=re.escape(f"{isolated}: {message}")):
        resolve_settings()


def test_typed_values_keep_their_type_where_it_fits(isolated: Path) -> None:
    isolated.write_text('max_cost = 2\nallowed_models = ["x", "y"]\n[fallbacks]\n"a" = ["b"]\n')
    settings = resolve_settings(max_iterations=3)
    assert (settings.limits.max_cost, settings.limits.max_iterations) == (2, 3)
    assert settings.models.allowed() == {"x", "y"} and settings.models.fallbacks == {"a": ["b"]}
    with pytest.raises(ConfigError, match=re.escape("max_cost must be a number, got '1.5'.")):
        resolve_settings(max_cost="1.5")


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("model", "openai/gpt-5", "openai/gpt-5"),  # str | None
        ("model", "none", None),
        ("max_iterations", " 7 ", 7),  # int
        ("max_cost", "2.5", 2.5),  # float | None
        ("max_tokens", "", None),  # int | None
        ("connect_timeout", "90", 90.0),  # float
        ("cell_timeout", "none", None),  # float | None: the sandbox's default
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
    got = resolve_settings().named()[name]
    assert got == value and type(got) is type(value)


def test_none_is_refused_where_a_field_cannot_be_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_MAX_ITERATIONS", "none")
    with pytest.raises(ConfigError, match=r"\$RLM_MAX_ITERATIONS: max_iterations must be a whole number, got 'none'"):
        resolve_settings()


def test_every_field_type_has_a_conversion() -> None:
    """A field of a new type fails here rather than being cast by the wrong converter at run time."""
    known = {str, int, float, bool, type(None), list[str], dict[str, list[str]], dict[str, dict[str, int]]}
    for name, setting in SETTINGS.items():
        assert set(get_args(setting.kind) or (setting.kind,)) <= known, f"{name}: {setting.kind}"


def _part_types() -> dict[str, type]:
    return {part.name: type(getattr(DEFAULTS, part.name)) for part in fields(Settings)}


def test_settings_are_frozen_parts_with_one_public_name_per_field() -> None:
    """Every field of every part has exactly one public name, and the table reads the part's type."""
    part_fields = [(part, spec.name) for part, cls in _part_types().items() for spec in fields(cls)]
    assert sorted((s.part, s.attribute) for s in SETTINGS.values()) == sorted(part_fields)
    for part, cls in _part_types().items():
        assert get_type_hints(Settings)[part] is cls
        with pytest.raises(FrozenInstanceError):
            setattr(getattr(DEFAULTS, part), fields(cls)[0].name, None)
    assert {"cache", "sandbox", "transport", "cache_dir", "sandbox_memory_mb"} <= set(SETTINGS)


def test_settings_are_set_by_their_public_names() -> None:
    changed = DEFAULTS.updated(cache=False, cache_dir="/c", sandbox="inprocess", max_cost=2.0, transport="litellm")
    assert (changed.cache.enabled, changed.cache.dir, changed.sandbox.mode) == (False, "/c", "inprocess")
    assert (changed.limits.max_cost, changed.transport.kind) == (2.0, "litellm")
    assert changed.models == DEFAULTS.models and changed.output == DEFAULTS.output
    assert changed.limits.max_iterations == DEFAULTS.limits.max_iterations
    assert DEFAULTS.named()["max_cost"] is None  # the defaults are untouched
    with pytest.raises(ConfigError, match="Unknown setting: max_costs"):
        DEFAULTS.updated(max_costs=1)
    with pytest.raises(ConfigError, match="Unknown setting"):
        resolve_settings(cache_size=1)


# fields of the engine's parts that a run fills from Settings, by the name of the setting
PARTS = {
    (EngineSettings, "max_iterations"): "max_iterations",
    (EngineSettings, "max_depth"): "max_depth",
    (EngineSettings, "after_block"): "after_block",
    (EngineSettings, "max_output_chars"): "max_output_chars",
    (EngineSettings, "sandbox"): "sandbox",
    (Timeouts, "connect_s"): "connect_timeout",
    (Timeouts, "first_byte_s"): "first_byte_timeout",
    (Timeouts, "idle_s"): "idle_timeout",
    (ModelLimits, "max_in_flight"): "max_in_flight",
}


def _literal_defaults(cls: type) -> set[str]:
    """The fields of a dataclass whose default is written out as a value, not read from elsewhere."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(body, ast.ClassDef)
    return {
        node.target.id
        for node in body.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None
        if isinstance(_default_of(node.value), ast.Constant | ast.UnaryOp)
    }


def _default_of(value: ast.expr) -> ast.expr | None:
    """The default a field declaration writes: `x = 3`, `field(default=3)` or `_public("name", 3)`."""
    if not isinstance(value, ast.Call):
        return value
    named = {keyword.arg: keyword.value for keyword in value.keywords}
    return named.get("default", value.args[-1] if value.args else None)


@pytest.mark.parametrize(("part", "setting"), list(PARTS.items()), ids=lambda item: str(item))
def test_every_default_is_declared_once(part: tuple[type, str], setting: str) -> None:
    cls, name = part
    home = SETTINGS[setting]
    home_type = _part_types()[home.part]
    assert getattr(cls(), name) == DEFAULTS.named()[setting]
    written = (name in _literal_defaults(cls)) + (home.attribute in _literal_defaults(home_type))
    assert written == 1, f"{cls.__name__}.{name} and {home_type.__name__}.{home.attribute}: write the default once"


def test_the_response_cache_defaults_are_the_settings() -> None:
    options = inspect.signature(ResponseCache).parameters
    assert options["size_limit"].default == DEFAULTS.cache.size_mb << 20
    assert options["cache_sampled"].default is DEFAULTS.cache.sampled


def test_limits_are_unbounded_unless_the_settings_bound_them() -> None:
    assert all(getattr(Limits(), spec.name) is None for spec in fields(Limits))
    assert Limits.of(DEFAULTS.limits) == Limits(max_calls=DEFAULT_MAX_CALLS)


def test_the_engine_settings_of_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_CELL_TIMEOUT", "40")
    settings = resolve_settings(max_depth=3)
    engine = EngineSettings.of(settings, Context.from_value("x" * (10 << 20)))
    assert engine.max_depth == 3 and engine.max_iterations == DEFAULTS.limits.max_iterations
    limits = engine.cell_limits
    assert (limits.timeout_s, limits.cpu_s, limits.memory_mb) == (40.0, 20.0, CellLimits().memory_mb + 40)
    monkeypatch.delenv("RLM_CELL_TIMEOUT")
    engine = EngineSettings.of(resolve_settings(cell_cpu=5, sandbox_memory_mb=64), Context.from_value("short"))
    assert (engine.cell_limits.timeout_s, engine.cell_limits.cpu_s, engine.cell_limits.memory_mb) == (
        CellLimits().timeout_s,  # unset, the sandbox's default
        5,
        64,
    )


def test_the_command_line_leaves_defaults_to_the_settings() -> None:
    """Unset flags are None, so `Settings` decides; the defaults the help names are read from it."""
    command = main.commands["query"]
    parsed = command.make_context("query", ["a question"]).params
    engine = {name: value for name, value in parsed.items() if name in SETTING_NAMES}
    assert len(engine) > 20
    assert all(value in (None, ()) for value in engine.values()), engine  # () : no --fallback given
    help_text = CliRunner().invoke(main, ["query", "--help"], terminal_width=200).output
    assert "{" not in help_text
    assert f"(default {DEFAULTS.limits.max_iterations})" in help_text
    assert f"(default {CellLimits().timeout_s:g})" in help_text


SETTING_NAMES = set(SETTINGS)
