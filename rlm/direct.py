"""The direct baseline: the whole context and the question in one call, as the RLM paper compares.

When the context does not fit the model's window it is cut in the middle (head and tail kept), as
the paper's base-model runs do. `RLM.direct` / `RLM.adirect` send these messages through the same
gateway as every RLM call, so the cache, budgets, retries and local-only mode apply to it too.
"""

from __future__ import annotations

from typing import Any

from rlm.tokens import count_tokens, encoding

DEFAULT_WINDOW = 128_000  # tokens, when litellm's price table does not know the model
OUTPUT_RESERVE = 4_096  # tokens kept free for the answer
SYSTEM = "You are a helpful assistant."


def model_window(model: str) -> int:
    """The model's input window in tokens from litellm's offline table, else DEFAULT_WINDOW."""
    from rlm.models.pricing import context_window

    return context_window(model) or DEFAULT_WINDOW


def truncate_middle(text: str, max_tokens: int) -> str:
    """Keep the head and the tail of `text` within `max_tokens`, saying how much was cut."""
    enc = encoding()
    ids = enc.encode(text, disallowed_special=())
    if len(ids) <= max_tokens:
        return text
    keep = max(max_tokens - 32, 0)
    head, tail = ids[: keep // 2], ids[len(ids) - (keep - keep // 2) :]
    cut = len(ids) - len(head) - len(tail)
    return f"{enc.decode(head)}\n\n[... {cut:,} tokens cut to fit the model's window ...]\n\n{enc.decode(tail)}"


def direct_messages(
    text: str, question: str, model: str, window: int | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """The messages of the direct call, and whether the context had to be cut to fit."""
    room = (window or model_window(model)) - count_tokens(question) - OUTPUT_RESERVE - 64
    body = truncate_middle(text, max(room, 0))
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{body}\n\n{question}"}]
    return messages, body != text
