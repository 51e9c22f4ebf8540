"""The exceptions users and components see. Each message names the problem and what to do."""

from __future__ import annotations

from typing import Any

from rlm.types import Status


class RLMError(Exception):
    """Base class of every error rlm raises on purpose."""


class ConfigError(RLMError):
    """The run cannot start: a model, key, file or setting is missing or wrong."""


class ContextError(RLMError):
    """The context given by the user cannot be used (missing, binary, invalid UTF-8, empty)."""


class LocalOnlyViolation(ConfigError):
    """Local-only mode refused a call to a non-local endpoint before any byte was sent."""


class ModelNotAllowed(ConfigError):
    """REPL code asked for a model the run's configuration does not name; nothing was sent."""


class ProviderError(RLMError):
    """A model provider failed. `transient` errors (429, 5xx, timeouts, dropped streams) may be retried."""

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        status_code: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.status_code = status_code
        self.transient = transient
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled whole, subclasses too (their fields are keyword-only): call workers send errors back."""
        return _restore, (type(self), self.args, self.__dict__)


class StreamInterrupted(ProviderError):
    """A stream broke after some text had arrived; `partial_text` is what arrived and is kept."""

    def __init__(self, message: str, *, partial_text: str, model: str = "") -> None:
        super().__init__(message, model=model, transient=True)
        self.partial_text = partial_text


def _restore(cls: type[ProviderError], args: tuple[Any, ...], state: dict[str, Any]) -> ProviderError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class BudgetExceeded(RLMError):
    """A tree-wide limit (cost, tokens, calls, time) was reached; `status` says which."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
