"""rlm: a streaming, concurrent, sandboxed engine for Recursive Language Models.

    from rlm import RLM
    result = RLM(model="openai/gpt-5", sub_model="openai/gpt-5-mini").query(text, "How many ...?")

Names are imported lazily so that `import rlm` and the `rlm` command start instantly.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["RLM", "Context", "RLMResult", "Status", "Usage"]

_EXPORTS = {
    "RLM": "rlm.api",
    "RLMResult": "rlm.api.result",
    "Context": "rlm.context",
    "Status": "rlm.types",
    "Usage": "rlm.types",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rlm' has no attribute {name!r}")
    return getattr(import_module(module), name)
