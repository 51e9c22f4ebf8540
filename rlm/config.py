"""Settings for a run, resolved in one place: explicit values, then RLM_* variables, then a config file.

A `Settings` is composed of parts, one per consumer: models, limits, sandbox, output, cache and
transport. Each setting keeps one public name across every source (`max_cost` as `RLM(max_cost=)`,
`--max-cost`, `RLM_MAX_COST` and the config file's `max_cost = 2.0`); `SETTINGS` maps each name to
the part and field that hold it. The config file is TOML, at $RLM_CONFIG or ~/.config/rlm/config.toml.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_origin, get_type_hints

from rlm.errors import ConfigError

ENV_PREFIX = "RLM_"

# Model calls a run may make, tree-wide, unless told otherwise: a loop of batches in model-written code
# is bounded by default. `max_calls = 0` (or "none" in the environment and the config file) lifts it.
DEFAULT_MAX_CALLS = 1000

NO_MODEL_MESSAGE = """\
No model is configured. rlm needs a root model and, optionally, a cheaper sub-model (litellm names).
  Hosted model:  export OPENAI_API_KEY=...  then
                 rlm query --model openai/gpt-5 --sub-model openai/gpt-5-mini --context FILE "question"
                 (or anthropic/..., openrouter/..., with that provider's key variable)
  Local model:   rlm query --model ollama_chat/qwen3 --api-base http://localhost:11434 --context FILE "question"
                 any OpenAI-compatible server (vLLM, llama.cpp): --model openai/NAME --api-base http://HOST:PORT/v1
  To set it once: export RLM_MODEL=... RLM_SUB_MODEL=... or put model = "..." in {config_path}
  No key at hand? `rlm demo` runs the engine end to end against a local scripted model."""


def _public(name: str, default: Any) -> Any:
    """A field whose public setting name differs from its name in the part (`cache.dir` is `cache_dir`)."""
    return field(default=default, metadata={"setting": name})


@dataclass(frozen=True)
class ModelSettings:
    """Which models answer, how they are reached, and which ones model-written code may name."""

    model: str | None = None
    sub_model: str | None = None
    aggregate_model: str | None = None
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed
    temperature: float | None = None  # sent with every call when set; above 0, cached only with cache_sampled
    # fallbacks are {"model": ["fallback", ...]}; in the environment and on the command line "model=fb1,fb2;other=fb3"
    fallbacks: dict[str, list[str]] | None = None
    # models REPL code may ask for (llm_query(..., model=...)) besides the configured ones, comma-separated
    # (a list in the config file); they are served through the run's api_base and key like its own
    allowed_models: str | list[str] | None = None
    local_only: bool = False
    local_networks: str | None = None  # CIDRs or host names that local-only mode also trusts

    def require_model(self) -> str:
        if not self.model:
            raise ConfigError(NO_MODEL_MESSAGE.format(config_path=config_path()))
        return self.model

    def allowed(self) -> frozenset[str]:
        """allowed_models as a set of names (it is text, or a list in the config file)."""
        value = self.allowed_models or ()
        names = value.split(",") if isinstance(value, str) else value
        return frozenset(name.strip() for name in names if str(name).strip())


@dataclass(frozen=True)
class LimitSettings:
    """How far a run may go, tree-wide (turns, depth, time, money, tokens, calls), and how fast it may
    call each model."""

    max_iterations: int = 30
    max_depth: int = 2
    timeout: float | None = None
    max_cost: float | None = None
    max_tokens: int | None = None
    max_calls: int | None = DEFAULT_MAX_CALLS  # None: no limit (given as 0 or "none")
    # the longest reply one call may get, sent as its max_tokens; with max_cost or max_tokens set and
    # this unset, 8192: a call is sent only when its prompt and a reply this long fit in those limits
    max_completion_tokens: int | None = None
    max_in_flight: int = 32  # concurrent calls per model
    rpm: int | None = None  # requests per minute per model
    tpm: int | None = None  # prompt tokens per minute per model
    # per-model overrides of max_in_flight / rpm / tpm: {"openai/gpt-5": {"rpm": 500, "tpm": 200000}};
    # in the environment "openai/gpt-5=rpm:500,tpm:200000;ollama/qwen3=max_in_flight:2"
    model_limits: dict[str, dict[str, int]] | None = None


@dataclass(frozen=True)
class SandboxSettings:
    """Where model-written code runs and what one cell may use. Unset (None), a cell gets the sandbox's
    own default (`sandbox.limits.CellLimits`), which is the sandbox's to say."""

    mode: str = _public("sandbox", "process")  # "process" (a security boundary) or "inprocess" (trusted code)
    cell_timeout: float | None = None  # seconds of a cell's own work
    # CPU seconds per cell; None: half of cell_timeout, so a call stuck in C (that no timer can
    # interrupt) is killed by the kernel well before the cell's deadline; the session restarts with its state
    cell_cpu: float | None = None
    # memory a REPL worker may add; default: the sandbox's (1 GiB) plus 4x the context
    memory_mb: int | None = _public("sandbox_memory_mb", None)


@dataclass(frozen=True)
class OutputSettings:
    """What becomes of the root model's output: when its code blocks run, and how much of what they
    print goes back to it."""

    after_block: str = "stop"  # see EngineSettings.after_block
    max_output_chars: int = 20_000


@dataclass(frozen=True)
class CacheSettings:
    """The persistent response cache."""

    enabled: bool = _public("cache", True)
    dir: str | None = _public("cache_dir", None)  # default ~/.cache/rlm
    size_mb: int = _public("cache_size_mb", 1024)
    sampled: bool = _public("cache_sampled", False)  # also cache calls with a temperature above 0


@dataclass(frozen=True)
class TransportSettings:
    """Who makes provider calls, in which processes, and how long each waits."""

    # "auto" sends OpenAI-compatible endpoints through rlm's own client (rlm/models/openai_transport.py)
    # and the rest through litellm; "litellm" sends every call there
    kind: str = _public("transport", "auto")
    call_workers: int = 0  # processes that make the provider calls (rlm/models/workers.py); 0: this one
    # seconds the native transport waits: for a connection, for a reply to start (a non-streamed reply
    # starts when it is complete; a slow local model may take minutes), and between pieces of a reply
    connect_timeout: float = 30.0
    first_byte_timeout: float = 600.0
    idle_timeout: float = 120.0


@dataclass(frozen=True)
class Settings:
    """Every setting of a run and its one default, in parts; the engine's own objects (EngineSettings,
    Limits, Timeouts, ModelLimits, the cache) are built each from its part and take their defaults
    from here. Read a part's field (`settings.limits.max_cost`); set by public name (`updated`)."""

    models: ModelSettings = field(default_factory=ModelSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    transport: TransportSettings = field(default_factory=TransportSettings)

    def updated(self, **values: Any) -> Settings:
        """A copy with settings replaced by their public names (`updated(max_cost=2.0)`)."""
        by_part: dict[str, dict[str, Any]] = defaultdict(dict)
        for name, value in values.items():
            setting = _setting(name)
            by_part[setting.part][setting.attribute] = value
        parts = {part: dataclasses.replace(getattr(self, part), **changes) for part, changes in by_part.items()}
        return dataclasses.replace(self, **parts)

    def named(self) -> dict[str, Any]:
        """Every setting by its public name."""
        return {name: getattr(getattr(self, s.part), s.attribute) for name, s in SETTINGS.items()}


@dataclass(frozen=True)
class SettingPlace:
    """Where a public setting name lives: its part, its field there, and that field's type."""

    part: str
    attribute: str
    kind: Any


def _settings_table() -> dict[str, SettingPlace]:
    table: dict[str, SettingPlace] = {}
    for part in fields(Settings):
        part_type = type(part.default_factory())  # type: ignore[misc]
        hints = get_type_hints(part_type)
        for spec in fields(part_type):
            table[spec.metadata.get("setting", spec.name)] = SettingPlace(part.name, spec.name, hints[spec.name])
    return table


SETTINGS = _settings_table()  # public name -> its place; every source of settings goes through it
DEFAULTS = Settings()  # what a run gets when nothing is set; other defaults are read from here


def _setting(name: str) -> SettingPlace:
    try:
        return SETTINGS[name]
    except KeyError:
        raise ConfigError(f"Unknown setting: {name}.") from None


def config_path() -> Path:
    return Path(os.environ.get("RLM_CONFIG") or Path.home() / ".config" / "rlm" / "config.toml")


def _read_config_file() -> dict[str, Any]:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The config file {path} is not valid TOML ({exc}). Fix or remove it.") from exc


def _convert(name: str, raw: Any, kind: Any, source: str) -> Any:
    """Coerce an environment or file value to the field's type, naming the source when it is wrong."""
    if raw is None or not isinstance(raw, str):
        return raw
    text = raw.strip()
    options = get_args(kind) if get_origin(kind) is UnionType else (kind,)
    if text.lower() in ("", "none") and type(None) in options:
        return None
    target = next(option for option in options if option is not type(None))  # str before list[str]
    if target is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{source}: {name} must be true or false, got {raw!r}.")
    if target in _TABLE_PARSERS:
        return _TABLE_PARSERS[target](text, source)
    try:
        return target(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: {name} must be {_kind_name(target)}, got {raw!r}.") from exc


def _model_table(text: str, source: str, form: str) -> dict[str, list[str]]:
    """The environment and command-line form of per-model settings: "a=x,y;b=z" -> {"a": ["x", "y"], ...}."""
    result: dict[str, list[str]] = {}
    for item in filter(str.strip, text.split(";")):
        model, sep, values = item.partition("=")
        parts = [value.strip() for value in values.split(",") if value.strip()]
        if not sep or not model.strip() or not parts:
            raise ConfigError(f"{source}: expected {form}, got {item.strip()!r}.")
        result.setdefault(model.strip(), []).extend(parts)
    return result


def parse_fallbacks(text: str, source: str = "fallbacks") -> dict[str, list[str]]:
    """ "a=b,c;d=e" -> {"a": ["b", "c"], "d": ["e"]}."""
    return _model_table(text, source, "MODEL=FALLBACK[,FALLBACK]")


def parse_model_limits(text: str, source: str = "model_limits") -> dict[str, dict[str, int]]:
    """ "a=rpm:500,tpm:9000;b=max_in_flight:2" -> {"a": {"rpm": 500, "tpm": 9000}, "b": {...}}."""
    table = _model_table(text, source, "MODEL=LIMIT:N[,LIMIT:N] with LIMIT one of max_in_flight, rpm, tpm")
    limits: dict[str, dict[str, int]] = {}
    for model, pairs in table.items():
        for pair in pairs:
            key, _, value = pair.partition(":")
            try:
                limits.setdefault(model, {})[key.strip()] = int(value)
            except ValueError:
                raise ConfigError(
                    f"{source}: {model}: {pair!r} must look like LIMIT:N with N a whole number."
                ) from None
    return limits


# the per-model tables, by their type: their environment form is parsed, not cast
_TABLE_PARSERS: dict[Any, Callable[[str, str], Any]] = {
    dict[str, list[str]]: parse_fallbacks,
    dict[str, dict[str, int]]: parse_model_limits,
}

MODEL_LIMIT_KEYS = ("max_in_flight", "rpm", "tpm")


def _check_model_limits(limits: dict[str, dict[str, int]] | None) -> None:
    for model, table in (limits or {}).items():
        for key, value in table.items():
            if key not in MODEL_LIMIT_KEYS or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"model_limits for {model}: {key} = {value!r}; the limits are {', '.join(MODEL_LIMIT_KEYS)}, "
                    "each a positive whole number."
                )


def resolve_settings(**explicit: Any) -> Settings:
    """Explicit values win (None means "not given"), then RLM_<NAME> variables, then the file."""
    _refuse_unknown(explicit, "Unknown setting")
    from_file, file_source = _read_config_file(), str(config_path())
    _refuse_unknown(from_file, f"{file_source}: unknown setting")  # a misspelt max_cost must not pass unseen
    values: dict[str, Any] = {}
    for name, setting in SETTINGS.items():
        if explicit.get(name) is not None:
            values[name] = _checked(name, explicit[name], setting.kind)
        elif (env := os.environ.get(ENV_PREFIX + name.upper())) is not None:
            values[name] = _convert(name, env, setting.kind, f"${ENV_PREFIX}{name.upper()}")
        elif name in from_file:
            value = _convert(name, from_file[name], setting.kind, file_source)
            values[name] = _checked(name, value, setting.kind, file_source)
    if values.get("max_calls") == 0:
        values["max_calls"] = None  # 0 lifts the default call limit
    settings = DEFAULTS.updated(**values)
    _check_choices(settings)
    _check_model_limits(settings.limits.model_limits)
    _check_positive(settings)
    return settings


def _refuse_unknown(given: dict[str, Any], problem: str) -> None:
    """Name each key that is not a setting, with the settings it may have meant."""
    unknown = sorted(set(given) - set(SETTINGS))
    if not unknown:
        return
    named = []
    for name in unknown:
        close = difflib.get_close_matches(name, SETTINGS, n=1, cutoff=0.7)
        named.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise ConfigError(f"{problem}{'s' if len(unknown) > 1 else ''}: {'; '.join(named)}.")


def _checked(name: str, value: Any, kind: Any, source: str | None = None) -> Any:
    """A typed value (from Python or TOML) that must fit the field's type; a whole number fits a float."""
    if value is None or _fits(value, kind):
        return value
    where = f"{source}: " if source else ""
    raise ConfigError(f"{where}{name} must be {_kind_name(kind)}, got {value!r}.")


def _fits(value: Any, kind: Any) -> bool:
    """Whether a typed value fits a field's annotation, down to the items of lists and tables."""
    origin, args = get_origin(kind), get_args(kind)
    if origin is UnionType:
        return any(_fits(value, option) for option in args)
    if type(value) is bool or kind is bool:  # bool is an int to Python, never to a setting
        return type(value) is bool and kind is bool
    if kind is float:
        return isinstance(value, int | float)
    if origin is list:
        return isinstance(value, list) and all(_fits(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    return isinstance(value, kind)


def _kind_name(kind: Any) -> str:
    if get_origin(kind) is UnionType:
        return " or ".join(_kind_name(option) for option in get_args(kind) if option is not type(None))
    if get_origin(kind) is list:
        return "a list of text"
    if get_origin(kind) is dict:
        return "a table of models (see the README)"
    return {int: "a whole number", float: "a number", bool: "true or false"}.get(kind, "text")


def _check_choices(settings: Settings) -> None:
    for name, value, choices in (
        ("after_block", settings.output.after_block, ("continue", "stop", "wait")),
        ("transport", settings.transport.kind, ("auto", "litellm")),
        ("sandbox", settings.sandbox.mode, ("process", "inprocess")),
    ):
        if value not in choices:
            allowed = ", ".join(repr(choice) for choice in choices[:-1]) + f" or {choices[-1]!r}"
            raise ConfigError(f"{name} must be {allowed}, got {value!r}.")


def _check_positive(settings: Settings) -> None:
    """Counts and limits must be positive: a zero would stop every run before it starts."""
    named = settings.named()
    for name in ("connect_timeout", "first_byte_timeout", "idle_timeout"):
        if named[name] <= 0:
            raise ConfigError(f"{name} must be above 0 seconds, got {named[name]!r}.")
    if named["cell_timeout"] is not None and named["cell_timeout"] < 1:
        raise ConfigError(
            f"cell_timeout must be at least 1 second (unset: the sandbox's default), got {named['cell_timeout']!r}."
        )
    if named["cell_cpu"] is not None and named["cell_cpu"] <= 0:
        raise ConfigError(f"cell_cpu must be above 0 seconds (unset: half of cell_timeout), got {named['cell_cpu']!r}.")
    for name in ("max_iterations", "max_depth", "max_output_chars", "max_in_flight"):
        if named[name] < 1:
            raise ConfigError(f"{name} must be at least 1, got {named[name]!r}.")
    if named["call_workers"] < 0:
        raise ConfigError(f"call_workers must be 0 (calls made here) or more, got {named['call_workers']!r}.")
    for name in (
        "timeout",
        "max_cost",
        "max_tokens",
        "max_calls",
        "max_completion_tokens",
        "rpm",
        "tpm",
        "sandbox_memory_mb",
    ):
        value = named[name]
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be above 0 (or unset for no limit), got {value!r}.")
