"""`rlm serve`: an OpenAI-compatible chat-completions server whose model is an RLM.

Any tool that speaks the OpenAI API (the `openai` SDK, chat front-ends, agent frameworks) can then use
an RLM as a model: the last user message is the question, the context is the earlier messages, or
files named under operator-allowed roots, or files uploaded through `/v1/files`. Each request runs
its own `RLM.aquery` (own events, budget and gateway), so nothing of one request is visible to another.

Built on aiohttp (already a dependency for the scripted server and the native transport). A client
that goes away cancels its handler (`handler_cancellation`), and with it the whole run tree.

One job per module: `options` (what the operator decides), `openai_format` (the wire format),
`uploads` and `sources` (where a run's context comes from), `metrics`, `app` (the routes) and
`hosting` (binding it, in the CLI or a background thread).
"""

from rlm.serve.app import RLMService
from rlm.serve.hosting import BackgroundServer, build_engine, serve_forever, start_site
from rlm.serve.metrics import Metrics
from rlm.serve.openai_format import ApiError, cap_budget, progress_line, split_messages
from rlm.serve.options import ServeOptions, check_exposure, is_loopback
from rlm.serve.sources import resolve_under_roots

__all__ = [
    "ApiError",
    "BackgroundServer",
    "Metrics",
    "RLMService",
    "ServeOptions",
    "build_engine",
    "cap_budget",
    "check_exposure",
    "is_loopback",
    "progress_line",
    "resolve_under_roots",
    "serve_forever",
    "split_messages",
    "start_site",
]
