"""`RLM`: the notebook and library face of the engine, one async core with a sync wrapper.

`await rlm.aquery(...)` runs on the caller's loop. `rlm.query(...)` works anywhere, including inside a
running event loop (a Jupyter cell), where it runs the same core on a private loop in a worker thread
(blocking.py). What a query returns is an `RLMResult` (result.py); in a notebook a live status line
shows while it runs (rlm/display.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm.api.blocking import blocking
from rlm.api.result import RLMResult
from rlm.budget import Budget, Limits
from rlm.config import NO_MODEL_MESSAGE as CLI_NO_MODEL_MESSAGE
from rlm.config import SETTINGS, Settings, config_path, resolve_settings
from rlm.display import afinishing, finishing, notebook_progress
from rlm.errors import ConfigError
from rlm.events import Event, EventLog, TraceWriter
from rlm.types import Status

if TYPE_CHECKING:
    from rlm.models.gateway import ModelGateway
    from rlm.models.router import RoutePolicy


NO_MODEL_MESSAGE = """\
No model is configured. RLM needs a root model and, optionally, a cheaper sub-model (litellm names):
  Hosted model:  RLM("openai/gpt-5", sub_model="openai/gpt-5-mini")  with OPENAI_API_KEY set (or api_key=...)
                 (or anthropic/..., openrouter/..., with that provider's key variable)
  Local model:   RLM("ollama_chat/qwen3", api_base="http://localhost:11434")
                 any OpenAI-compatible server (vLLM, llama.cpp): RLM("openai/NAME", api_base="http://HOST:PORT/v1")
  To set it once: RLM_MODEL=... RLM_SUB_MODEL=... in the environment, or model = "..." in {config_path}
  No key at hand? `rlm demo` runs the engine end to end against a local scripted model."""

FLAG = re.compile(r"(?<![\w-])--([a-z][a-z-]*[a-z])")


@contextlib.contextmanager
def _python_words() -> Iterator[None]:
    """Configuration errors are written for the command line; from Python they name the argument
    (`api_key=`, not `--api-key`). The original wording stays on the error as `cli_message`."""
    try:
        yield
    except ConfigError as exc:
        if not getattr(exc, "cli_message", None):
            names = SETTINGS.keys()

            def argument(match: re.Match[str]) -> str:
                name = match.group(1).replace("-", "_")
                return f"RLM({name}=...)" if name in names else match.group(0)

            exc.cli_message = str(exc)  # type: ignore[attr-defined]
            exc.args = (FLAG.sub(argument, str(exc)), *exc.args[1:])
        raise


# what repr(RLM(...)) shows when set: the models and the limits, never the key
REPR_SETTINGS = (
    *("model", "sub_model", "api_base"),
    *("max_cost", "max_tokens", "max_calls", "timeout", "max_depth", "max_iterations"),
)


class RLM:
    """A configured engine. Options are settings by their public names (`max_cost=2.0`, see
    `rlm.config.SETTINGS`); unset ones come from RLM_* environment variables and the config file.
    `router(origin, messages)` may pick the model of any call not named in code: return a model
    name, an Endpoint, or None for the default rule."""

    def __init__(
        self,
        model: str | None = None,
        sub_model: str | None = None,
        *,
        router: RoutePolicy | None = None,
        **options: Any,
    ) -> None:
        with _python_words():
            self.settings: Settings = resolve_settings(model=model, sub_model=sub_model, **options)
            if not self.settings.models.model:
                error = ConfigError(NO_MODEL_MESSAGE.format(config_path=config_path()))
                error.cli_message = CLI_NO_MODEL_MESSAGE.format(config_path=config_path())  # type: ignore[attr-defined]
                raise error
        self.router = router

    def __repr__(self) -> str:
        """Model, sub-model and the limits that are set; never the key."""
        named = self.settings.named()
        fields = ", ".join(f"{name}={named[name]!r}" for name in REPR_SETTINGS if named[name] is not None)
        router = f", router={getattr(self.router, '__name__', type(self.router).__name__)}" if self.router else ""
        return f"RLM({fields}{router})"

    @contextlib.contextmanager
    def _run(
        self, trace: str | Path | None, on_event: Callable[[Event], None] | None
    ) -> Iterator[tuple[EventLog, Budget, ModelGateway]]:
        """What one run owns: its events (and trace file), its tree-wide budget and its gateway."""
        from rlm.models.build import build_gateway, timeouts_of
        from rlm.models.preflight import check_routes
        from rlm.models.workers import CallWorkers
        from rlm.scheduler import Scheduler

        s = self.settings
        events = EventLog()
        writer = TraceWriter(trace) if trace else None
        if writer:
            events.subscribe(writer)
        if on_event:
            events.subscribe(on_event)
        budget = Budget(Limits.of(s.limits))
        scheduler = Scheduler.of(s.limits)
        calls = s.transport
        workers = CallWorkers(calls.call_workers, timeouts_of(calls)) if calls.call_workers else None
        try:
            gateway = build_gateway(
                s, budget=budget, scheduler=scheduler, events=events, policy=self.router, workers=workers
            )
            check_routes(gateway.routes)
            if workers:
                workers.start()  # in the background: calls run here until the workers are connected
            try:
                yield events, budget, gateway
            finally:
                gateway.close()
                if workers:
                    workers.close()
                    events.emit(
                        "call_workers",
                        workers=calls.call_workers,
                        served=workers.served,
                        in_process=workers.in_process,
                        error=workers.start_error,
                    )
        finally:
            if writer:
                writer.close()

    async def aquery(
        self,
        context: Any,
        question: str,
        *,
        trace: str | Path | None = None,
        on_event: Callable[[Event], None] | None = None,
        keep_cancelled: bool = False,
        progress: bool | None = None,
    ) -> RLMResult:
        """Answer `question` about `context`: a str (the text itself), bytes, a list of documents, a dict
        of named texts, a `pathlib.Path` to a file (mapped, not read) or a folder (its text files as
        documents), or a Context. `trace` writes every event
        to a JSONL file as it happens. In a Jupyter cell a live status line shows while it runs and a
        summary stays when it ends (`progress=False` turns it off)."""
        live, on_event = notebook_progress(progress, on_event)
        with _python_words():
            return await afinishing(live, self._aquery(context, question, trace, on_event, keep_cancelled))

    async def _aquery(
        self,
        context: Any,
        question: str,
        trace: str | Path | None,
        on_event: Callable[[Event], None] | None,
        keep_cancelled: bool,
    ) -> RLMResult:
        s = self.settings
        if s.sandbox.mode == "process":
            from sandbox.zygote import prestart

            prestart()  # the fork server boots while the engine is imported and the first request goes out
        from rlm.engine import EngineSettings, Tree, run_tree

        ctx = _as_context(context)
        engine_settings = EngineSettings.of(s, ctx)
        with self._run(trace, on_event) as (events, budget, gateway):
            routes = gateway.routes
            events.emit("run_start", question=question, models={"root": routes.root.model, "sub": routes.sub.model})
            outcome = await run_tree(
                Tree(engine_settings, gateway, events), budget, ctx, question, keep_cancelled=keep_cancelled
            )
            return RLMResult(
                answer=outcome.answer,
                status=outcome.status,
                usage=outcome.usage,
                usage_by_model=outcome.usage_by_model,
                sub_calls=outcome.sub_calls,
                wall_time_s=outcome.wall_time_s,
                iterations=outcome.iterations,
                error=outcome.error,
                trajectory=events.trajectory,
                usage_by_role=dict(gateway.usage_by_role),
                cache_hits=gateway.cache_hits,
                saved_usd=gateway.saved_usd,
                saved_tokens=gateway.saved_tokens,
            )

    async def adirect(
        self,
        context: Any,
        question: str,
        *,
        trace: str | Path | None = None,
        on_event: Callable[[Event], None] | None = None,
        window: int | None = None,
        progress: bool | None = None,
    ) -> RLMResult:
        """The paper's baseline: the whole context (cut in the middle to fit the root model's window)
        and the question in one call to the root model, through the same gateway as an RLM run."""
        live, on_event = notebook_progress(progress, on_event)
        with _python_words():
            return await afinishing(live, self._adirect(context, question, trace, on_event, window))

    async def _adirect(
        self,
        context: Any,
        question: str,
        trace: str | Path | None,
        on_event: Callable[[Event], None] | None,
        window: int | None,
    ) -> RLMResult:
        from rlm.context import DocumentList
        from rlm.direct import direct_messages
        from rlm.errors import BudgetExceeded, ProviderError
        from rlm.types import CallOrigin, Role

        ctx = _as_context(context)
        text = "\n\n".join(map(str, ctx)) if isinstance(ctx, DocumentList) else str(ctx)
        started = time.monotonic()
        with self._run(trace, on_event) as (events, _budget, gateway):
            model = gateway.routes.root.model
            messages, truncated = direct_messages(text, question, model, window)
            events.emit("run_start", question=question, models={"root": model}, method="direct", truncated=truncated)
            answer, status, error = None, Status.COMPLETED, None
            try:
                answer = (await gateway.complete(messages, CallOrigin((), Role.ROOT))).text
            except BudgetExceeded as exceeded:
                status, error = exceeded.status, str(exceeded)
            except ProviderError as failure:
                status, error = Status.PROVIDER_ERROR, str(failure)
            events.emit("run_end", status=status.value, answer=answer, error=error)
            return RLMResult(
                answer=answer,
                status=status,
                usage=gateway.total_usage,
                usage_by_model=dict(gateway.usage_by_model),
                sub_calls=0,
                wall_time_s=time.monotonic() - started,
                iterations=1,
                error=error,
                trajectory=events.trajectory,
                usage_by_role=dict(gateway.usage_by_role),
                cache_hits=gateway.cache_hits,
                saved_usd=gateway.saved_usd,
                saved_tokens=gateway.saved_tokens,
            )

    def query(self, context: Any, question: str, *, progress: bool | None = None, **kwargs: Any) -> RLMResult:
        """Blocking `aquery`. Ctrl-C returns the partial result with status `interrupted`. In a Jupyter
        cell a live status line shows while it runs (`progress=False` turns it off)."""
        kwargs.setdefault("keep_cancelled", True)
        # made here, in the caller's thread: the status line lands in this cell
        live, kwargs["on_event"] = notebook_progress(progress, kwargs.get("on_event"))
        return finishing(live, lambda: blocking(lambda: self.aquery(context, question, progress=False, **kwargs)))

    def direct(self, context: Any, question: str, *, progress: bool | None = None, **kwargs: Any) -> RLMResult:
        """Blocking `adirect`."""
        live, kwargs["on_event"] = notebook_progress(progress, kwargs.get("on_event"))
        return finishing(live, lambda: blocking(lambda: self.adirect(context, question, progress=False, **kwargs)))


def _as_context(context: Any) -> Any:
    """A Context from what the caller gave. A `str` is text; a file is named by a `pathlib.Path`."""
    from rlm.context import Context

    if isinstance(context, Context):
        return context
    if isinstance(context, os.PathLike) and os.path.isdir(context):
        from rlm.gather import gather, skipped_notice

        found = gather([os.fspath(context)])
        if found.skipped:
            warnings.warn(f"context: {skipped_notice(found.skipped)}", stacklevel=4)
        return Context.from_paths(found.files, names=found.names)
    if isinstance(context, os.PathLike):
        return Context.from_path(context)
    return Context.from_value(context)
