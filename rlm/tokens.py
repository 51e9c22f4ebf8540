"""Token counting that works offline, without touching the environment.

tiktoken downloads its encodings on first use. litellm's package ships the cl100k and o200k files
(named as tiktoken's cache names them); unless the user points tiktoken at a cache of their own
(TIKTOKEN_CACHE_DIR), the encoding is built straight from the shipped file, checked against the
hash tiktoken expects. The patterns and special tokens are tiktoken's own (tiktoken_ext/openai_public.py).
"""

from __future__ import annotations

import binascii
import hashlib
import os
import threading
from typing import TYPE_CHECKING, NamedTuple

from rlm.litellm_files import litellm_package

if TYPE_CHECKING:
    import tiktoken

DEFAULT_ENCODING = "cl100k_base"


class _Spec(NamedTuple):
    file: str  # sha1 of the download URL: the name tiktoken's cache (and litellm's copy) gives the file
    sha256: str
    pat_str: str
    special_tokens: dict[str, int]


_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_BUNDLED = {
    "cl100k_base": _Spec(
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
        r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": _Spec(
        "fb374d419588a4632f3f557e76b4b70aebbca790",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}


def _from_bundled_file(name: str) -> tiktoken.Encoding | None:
    """The encoding built from litellm's shipped copy of its file; None if there is no intact copy."""
    data = bundled_file(name)
    return None if data is None else build(name, data)


def bundled_file(name: str) -> bytes | None:
    """litellm's shipped copy of the encoding's file, if intact (the hash tiktoken expects)."""
    spec, package = _BUNDLED.get(name), litellm_package()
    if spec is None or package is None:
        return None
    path = package / "litellm_core_utils" / "tokenizers" / spec.file
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == spec.sha256 else None


def build(name: str, data: bytes) -> tiktoken.Encoding:
    """The encoding from its file's bytes: one base64 token and its rank per line."""
    import tiktoken

    spec = _BUNDLED[name]
    fields = data.split()
    ranks = dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2]), strict=True))
    return tiktoken.Encoding(name, pat_str=spec.pat_str, mergeable_ranks=ranks, special_tokens=spec.special_tokens)


_encodings: dict[str, tiktoken.Encoding] = {}
_loading = threading.Lock()


def encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """The tiktoken encoding `name`, loaded once per process from the offline files (~0.2 s)."""
    found = _encodings.get(name)
    if found is None:
        with _loading:  # a preload in progress is waited for, not repeated
            found = _encodings.get(name)
            if found is None:
                found = _encodings[name] = _load(name)
    return found


def preload(name: str = DEFAULT_ENCODING) -> None:
    """Load the encoding in a background thread, overlapping a run's start and first request: a
    stream the engine closes before the provider's usage arrives is counted here, and would otherwise
    wait for the load."""
    if name not in _encodings:
        threading.Thread(target=encoding, args=(name,), name="rlm-tiktoken-load", daemon=True).start()


def _load(name: str) -> tiktoken.Encoding:
    import tiktoken

    if not os.environ.get("TIKTOKEN_CACHE_DIR") and (bundled := _from_bundled_file(name)) is not None:
        return bundled
    return tiktoken.get_encoding(name)


def count_tokens(text: str, encoding_name: str = DEFAULT_ENCODING) -> int:
    """Number of tokens of `text`; special-token text is counted as ordinary text, never refused."""
    return len(encoding(encoding_name).encode(text, disallowed_special=()))
