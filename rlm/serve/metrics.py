"""The counters `rlm serve` shows at `/metrics`, in the Prometheus text format."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlm.api.result import RLMResult


class Metrics:
    """Counters for `/metrics`, in the Prometheus text format."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()  # by final status, plus "disconnected"
        self.errors: Counter[int] = Counter()  # error responses by HTTP status
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self.in_flight = 0

    def record(self, result: RLMResult) -> None:
        self.runs[result.status.value] += 1
        self.calls += result.usage.calls
        self.prompt_tokens += result.usage.prompt_tokens
        self.completion_tokens += result.usage.completion_tokens
        self.cost_usd += result.usage.cost_usd

    def render(self) -> str:
        lines = [
            "# HELP rlm_serve_runs_total Runs ended, by status (disconnected: the client went away).",
            "# TYPE rlm_serve_runs_total counter",
            *(f'rlm_serve_runs_total{{status="{s}"}} {n}' for s, n in sorted(self.runs.items())),
            "# HELP rlm_serve_runs_in_flight Runs in progress.",
            "# TYPE rlm_serve_runs_in_flight gauge",
            f"rlm_serve_runs_in_flight {self.in_flight}",
            "# HELP rlm_serve_model_calls_total Model calls of finished runs, the whole tree.",
            "# TYPE rlm_serve_model_calls_total counter",
            f"rlm_serve_model_calls_total {self.calls}",
            "# HELP rlm_serve_tokens_total Tokens of finished runs, the whole tree.",
            "# TYPE rlm_serve_tokens_total counter",
            f'rlm_serve_tokens_total{{kind="prompt"}} {self.prompt_tokens}',
            f'rlm_serve_tokens_total{{kind="completion"}} {self.completion_tokens}',
            "# HELP rlm_serve_cost_usd_total Cost of finished runs in USD, the whole tree.",
            "# TYPE rlm_serve_cost_usd_total counter",
            f"rlm_serve_cost_usd_total {self.cost_usd:.6f}",
            "# HELP rlm_serve_errors_total Error responses, by HTTP status.",
            "# TYPE rlm_serve_errors_total counter",
            *(f'rlm_serve_errors_total{{status="{s}"}} {n}' for s, n in sorted(self.errors.items())),
        ]
        return "\n".join(lines) + "\n"
