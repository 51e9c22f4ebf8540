"""The engine options every command that runs the engine takes; they become `RLM(...)` arguments,
and so one `rlm.config.Settings`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


class SettingOption(click.Option):
    """An engine option: unset, it stays None and `Settings` gives the default, which its help names.
    The help is filled in when shown, so that starting `rlm` does not import the settings."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None:
            return None
        from types import SimpleNamespace

        from rlm.budget import DEFAULT_COMPLETION_CAP
        from rlm.config import DEFAULTS
        from sandbox.limits import CellLimits

        cache = "on" if DEFAULTS.cache.enabled else "off"
        defaults = {
            "d": SimpleNamespace(**DEFAULTS.named()),
            "cell": CellLimits(),
            "completion_cap": DEFAULT_COMPLETION_CAP,
            "cache": cache,
        }
        return record[0], record[1].format(**defaults)


def setting_option(*names: str, **attrs: Any) -> Callable[..., Any]:
    return click.option(*names, cls=SettingOption, **attrs)


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that runs the engine takes (they become `rlm.config.Settings`)."""
    options = [
        setting_option("--model", "-m", help="Root model, a litellm name (env RLM_MODEL)."),
        setting_option("--sub-model", "-s", help="Model for llm_query sub-calls (env RLM_SUB_MODEL)."),
        setting_option("--aggregate-model", help="Model for llm_query(..., role='aggregate') (default: the root)."),
        setting_option("--api-base", help="Base URL of an OpenAI-compatible or self-hosted server."),
        setting_option("--api-key", help="API key (prefer the provider's environment variable)."),
        setting_option(
            "--temperature",
            type=float,
            help="Sampling temperature of every call (default: the provider's); above 0, cached only "
            "with cache_sampled.",
        ),
        setting_option(
            "--fallback",
            "fallbacks",
            multiple=True,
            metavar="MODEL=FALLBACK[,FALLBACK]",
            help="When MODEL fails past its retries, FALLBACK takes the call (repeatable).",
        ),
        setting_option("--max-iterations", type=int, help="Turns per RLM node (default {d.max_iterations})."),
        setting_option("--max-depth", type=int, help="RLM levels including the root (default {d.max_depth})."),
        setting_option("--timeout", type=float, help="Wall-clock limit of a run (the whole tree), in seconds."),
        setting_option("--max-cost", type=float, help="Cost limit of a run (the whole tree), in USD."),
        setting_option("--max-tokens", type=int, help="Token limit of a run (the whole tree)."),
        setting_option(
            "--max-calls",
            type=int,
            help="Model-call limit of a run (the whole tree; default {d.max_calls}, 0: no limit).",
        ),
        setting_option(
            "--max-completion-tokens",
            type=int,
            help="Longest reply of one call, sent as its max_tokens (default with --max-cost/--max-tokens: "
            "{completion_cap}); "
            "each call is sent only when its prompt and a reply this long fit in the limits.",
        ),
        setting_option(
            "--cell-timeout", type=float, help="Seconds of computation per REPL cell (default {cell.timeout_s:g})."
        ),
        setting_option("--cell-cpu", type=float, help="CPU seconds per REPL cell (default: half of --cell-timeout)."),
        setting_option(
            "--sandbox-memory",
            "sandbox_memory_mb",
            type=int,
            metavar="MB",
            help="Memory a REPL cell may use (default {cell.memory_mb} MB plus 4x the context's size).",
        ),
        setting_option(
            "--max-output-chars",
            type=int,
            help="REPL output shown to the model per block (default {d.max_output_chars}).",
        ),
        setting_option("--max-in-flight", type=int, help="Concurrent calls per model (default {d.max_in_flight})."),
        setting_option("--rpm", type=int, help="Requests per minute per model."),
        setting_option("--tpm", type=int, help="Prompt tokens per minute per model."),
        setting_option(
            "--call-workers",
            type=int,
            help="Processes that make the model calls, for wide fan-outs on spare cores "
            "(default {d.call_workers}: this one).",
        ),
        setting_option(
            "--transport",
            type=click.Choice(["auto", "litellm"]),
            help="auto: OpenAI-compatible models through rlm's own client, others through litellm; "
            "litellm: every call through litellm (default {d.transport}).",
        ),
        setting_option(
            "--first-byte-timeout",
            type=float,
            help="Seconds a call waits for its reply to start before it is retried (default {d.first_byte_timeout:g}).",
        ),
        setting_option(
            "--idle-timeout",
            type=float,
            help="Seconds a call waits between two pieces of a reply before it is retried "
            "(default {d.idle_timeout:g}).",
        ),
        setting_option(
            "--after-block",
            type=click.Choice(["stop", "continue", "wait"]),
            help="At a closed block: end the reply and run it (stop), run it while the reply "
            "streams on (continue), or run blocks after the reply (wait); default {d.after_block}.",
        ),
        setting_option(
            "--sandbox", type=click.Choice(["process", "inprocess"]), help="REPL isolation (default {d.sandbox})."
        ),
        setting_option(
            "--cache/--no-cache", default=None, help="Serve repeated calls from the response cache (default {cache})."
        ),
        setting_option(
            "--local-only", is_flag=True, default=None, help="Refuse every call to an endpoint not on this machine."
        ),
        setting_option(
            "--allowed-models",
            metavar="MODEL[,MODEL]",
            help="Models REPL code may ask for by name besides the configured ones (served through --api-base).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def settings_from(fallbacks: tuple[str, ...], options: dict[str, Any]) -> dict[str, Any]:
    """Engine options as `RLM(...)` keyword arguments (unset flags stay unset). Every command that
    runs the engine passes here: the process is rlm's own, so litellm's import may freeze its heap."""
    from rlm.config import parse_fallbacks
    from rlm.models.pricing import own_process

    own_process()

    if fallbacks:
        options["fallbacks"] = parse_fallbacks(";".join(fallbacks), "--fallback")
    return {name: value for name, value in options.items() if value is not None}
