"""What every REPL session shares: the interface the engine drives, the bridge its cells' sub-calls go
through, and how a cell's reply becomes a CellOutcome (trusting nothing about its shape)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

from rlm.errors import RLMError
from rlm.types import CellOutcome
from sandbox import oslayer
from sandbox.limits import CellLimits
from sandbox.plain import to_plain
from sandbox.protocol import QUERY_NAMES

ERROR_KINDS = frozenset({"exception", "policy", "timeout", "cpu", "memory", "output", "killed"})


class HostBridge(Protocol):
    """What the engine gives a session so that cells can make sub-calls."""

    async def call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> object: ...


class SandboxError(RLMError):
    """A REPL session could not be started (bad context spec, the worker could not start)."""


class Session(ABC):
    """A persistent REPL: `run_cell` never raises for anything the cell did."""

    @abstractmethod
    async def run_cell(self, code: str) -> CellOutcome: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    @property
    @abstractmethod
    def answer(self) -> dict[str, Any]:
        """The cell's `answer` dict as last seen, also mid-cell: what a cancelled run keeps."""

    @property
    def missing_layers(self) -> list[str]:
        """The OS layers (sandbox/oslayer.py) not under this session's cells, as 'name (why)'."""
        return [f"{name} (in-process mode)" for name in oslayer.LAYERS]

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def answer_call(bridge: HostBridge, message: dict[str, Any], limits: CellLimits) -> dict[str, Any]:
    """Run one sub-call of a cell on the host; failures become an error the cell can catch."""
    name, args, kwargs = message.get("name"), message.get("args"), message.get("kwargs")
    if name not in QUERY_NAMES or not isinstance(args, list) or not isinstance(kwargs, dict):
        return {"op": "result", "ok": False, "error": "malformed host call"}
    if name.endswith("_batched") and args and (problem := limits.batch_problem(name, args[0])):
        return {"op": "result", "ok": False, "error": problem}  # the worker checks too; this is the boundary
    try:
        value = await bridge.call(name, args, kwargs)
    except Exception as exc:
        return {"op": "result", "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"op": "result", "ok": True, "value": to_plain(value)}


def to_outcome(message: dict[str, Any], limits: CellLimits, duration_s: float) -> CellOutcome:
    """A CellOutcome from what the interpreter sent, trusting nothing about its shape."""
    error = _text(message.get("error"), 20_000)
    kind = message.get("error_kind")
    answer = message.get("answer") if isinstance(message.get("answer"), dict) else {}
    variables = message.get("variables") if isinstance(message.get("variables"), list) else []
    return CellOutcome(
        stdout=_text(message.get("stdout"), limits.output_chars + 200) or "",
        error=error,
        error_kind=(kind if kind in ERROR_KINDS else "exception") if error else None,
        duration_s=duration_s,
        answer={
            "content": _text(answer.get("content"), limits.answer_chars) or "",
            "ready": answer.get("ready") is True,
        },
        final=_text(message.get("final"), limits.answer_chars),
        variables=[v for v in variables if isinstance(v, str)][:1000],
        notice=_text(message.get("notice"), 2_000),
    )


def _text(value: Any, cap: int) -> str | None:
    return str.__str__(value)[:cap] if isinstance(value, str) else None


def join_notices(*notices: str | None) -> str | None:
    return "; ".join(n for n in notices if n) or None
