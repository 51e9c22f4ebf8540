"""Files litellm ships that rlm reads as data, found without importing litellm (a ~3 s import): its
price table, its list of OpenAI-compatible providers and the tiktoken encodings it bundles."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def litellm_package() -> Path | None:
    """litellm's installed package directory, or None where litellm is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
