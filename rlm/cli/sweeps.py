"""Commands that run many tasks, resumably: `rlm bench` (a benchmark suite) and `rlm batch` (a jobs file)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from rlm.cli.common import EXIT_INTERRUPTED, EXIT_PROVIDER, fail
from rlm.cli.options import engine_options, settings_from

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _ray_option(what: str) -> Decorator:
    return click.option(
        "--ray",
        "ray_address",
        is_flag=False,
        flag_value="local",
        default=None,
        metavar="[ADDRESS]",
        help=f"{what}: alone, an embedded local Ray; 'auto' or ray://host:10001 joins a cluster.",
    )


def _whole_limits(scope: str, unit: str, *, calls_note: str, cost_note: str = "") -> Decorator:
    """--SCOPE-max-calls and --SCOPE-max-cost: limits of the whole sweep or batch, lent out run by run."""
    calls = click.option(f"--{scope}-max-calls", type=int, help=f"Model calls for the whole {scope} ({calls_note}).")
    cost = click.option(
        f"--{scope}-max-cost",
        type=float,
        metavar="USD",
        help=f"Cost limit of the whole {scope}: each {unit} runs with part of what is left as its --max-cost "
        f"(an even share per {unit} running at once, unless --max-cost is set).{cost_note}",
    )
    return lambda command: calls(cost(command))


@click.command()
@click.argument("suite")
@click.option(
    "--method",
    type=click.Choice(["rlm", "direct"]),
    default="rlm",
    show_default=True,
    help="rlm, or the whole context in one call (cut to the window), as the paper's baseline.",
)
@click.option("--n", type=int, help="Number of tasks (default: the suite's).")
@click.option("--length", help="Context length in tokens, e.g. 32K or 131072.")
@click.option("--concurrency", type=int, default=4, show_default=True, help="Tasks run in parallel.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Results folder (resumable).")
@click.option("--seed", type=int, default=0, show_default=True)
@_ray_option("Run the tasks on Ray")
@_whole_limits("sweep", "task", calls_note="tasks it cuts run on a re-run")
@engine_options
def bench(suite: str, fallbacks: tuple[str, ...], **options: Any) -> None:
    """Run a benchmark SUITE (oolong, oolong-spam, oolong-pairs, sniah[-noise|-uuid|-80k], or a JSONL file).

    Engine options apply to each task's run (--timeout and --max-cost are per task); --rpm, --tpm and
    --max-in-flight hold across the whole sweep."""
    from rlm.bench import run_bench
    from rlm.config import resolve_settings
    from rlm.errors import ConfigError, ContextError, ProviderError

    sweep_keys = ("method", "n", "length", "concurrency", "out_dir", "seed", "ray_address")
    sweep = {k: options.pop(k) for k in (*sweep_keys, "sweep_max_calls", "sweep_max_cost")}
    try:
        engine = settings_from(fallbacks, options)
        settings = resolve_settings(model=engine.pop("model", None), sub_model=engine.pop("sub_model", None))
        if not settings.models.model:
            fail("no model configured: pass --model (and --sub-model) or set RLM_MODEL; see `rlm bench --help`.")
        run_bench(suite, model=settings.models.require_model(), sub_model=settings.models.sub_model, **sweep, **engine)
    except (ConfigError, ContextError, FileNotFoundError) as exc:
        fail(exc)
    except ProviderError as exc:
        fail(exc, EXIT_PROVIDER)
    except KeyboardInterrupt:
        fail("interrupted; finished tasks are kept, re-run the same command to resume.", EXIT_INTERRUPTED)


@click.command()
@click.argument("jobs", type=click.Path(dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Results JSONL (resumable).")
@click.option(
    "--concurrency", type=int, default=4, show_default=True, help="Jobs run in parallel (an embedded Ray's CPUs)."
)
@_ray_option("Run on Ray")
@_whole_limits(
    "batch", "job", calls_note="a re-run may spend as many again", cost_note=" A re-run may spend as much again."
)
@engine_options
def batch(
    jobs: str,
    out_path: str,
    concurrency: int,
    ray_address: str | None,
    batch_max_calls: int | None,
    batch_max_cost: float | None,
    **options: Any,
) -> None:
    """Answer every job of JOBS, a JSONL file of {"question", "context" (text) or "context_path" (file),
    optional "id"}. Rows are appended to --out as jobs end; a re-run does only the missing ones.

    Engine options apply to each job's run; --rpm and --max-in-flight hold across the whole batch."""
    from rlm.batch import run_batch
    from rlm.errors import ConfigError, ContextError

    fallbacks = options.pop("fallbacks")
    try:
        settings = settings_from(fallbacks, options)
        run_batch(
            jobs,
            out_path,
            settings,
            concurrency=concurrency,
            ray_address=ray_address,
            max_calls=batch_max_calls,
            max_cost=batch_max_cost,
        )
    except (ConfigError, ContextError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        fail("interrupted; finished jobs are kept, re-run the same command to resume.", EXIT_INTERRUPTED)
