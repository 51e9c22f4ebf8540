"""Which providers speak the OpenAI chat-completions protocol, where they live and which key they take.

The native transport (rlm/models/openai_transport.py) serves these without litellm. The big ones are
listed here with the base URLs and key variables litellm uses for them (so a user's environment means
the same thing on either transport); litellm's JSON-configured providers (`llms/openai_like/
providers.json` in its package) are read as data, without importing litellm.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from typing import Any

from rlm.litellm_files import litellm_package


@dataclass(frozen=True)
class Provider:
    """An OpenAI-compatible provider: its default base URL (None: the user must give one), the
    variables that override the base and hold the key, and whether a call without a key can work."""

    name: str
    base: str | None
    base_vars: tuple[str, ...]
    key_vars: tuple[str, ...]
    key_required: bool = True
    base_suffix: str = ""  # appended to a base that lacks it (Ollama's OpenAI API lives under /v1)

    def base_url(self, api_base: str | None) -> str | None:
        """Where the calls go: the endpoint's api_base, else the provider's variable, else its default."""
        base = api_base or next((v for name in self.base_vars if (v := os.environ.get(name))), None) or self.base
        if base and self.base_suffix and not base.rstrip("/").endswith(self.base_suffix):
            base = base.rstrip("/") + self.base_suffix
        return base.rstrip("/") if base else None

    def key(self) -> str | None:
        return next((v for name in self.key_vars if (v := os.environ.get(name))), None)


def _p(name: str, base: str | None, base_vars: tuple[str, ...], key_vars: tuple[str, ...], **kw: Any) -> Provider:
    return Provider(name, base, base_vars, key_vars, **kw)


_BUILT_IN = [
    _p("openai", "https://api.openai.com/v1", ("OPENAI_BASE_URL", "OPENAI_API_BASE"), ("OPENAI_API_KEY",)),
    _p("custom_openai", None, ("OPENAI_API_BASE",), ("OPENAI_API_KEY",), key_required=False),
    _p("openrouter", "https://openrouter.ai/api/v1", ("OPENROUTER_API_BASE",), ("OPENROUTER_API_KEY", "OR_API_KEY")),
    _p("groq", "https://api.groq.com/openai/v1", ("GROQ_API_BASE",), ("GROQ_API_KEY",)),
    _p(
        "together_ai",
        "https://api.together.ai/v1",
        ("TOGETHER_AI_API_BASE",),
        ("TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN"),
    ),
    _p("deepseek", "https://api.deepseek.com/beta", ("DEEPSEEK_API_BASE",), ("DEEPSEEK_API_KEY",)),
    _p(
        "fireworks_ai",
        "https://api.fireworks.ai/inference/v1",
        ("FIREWORKS_API_BASE",),
        ("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"),
    ),
    _p("xai", "https://api.x.ai/v1", ("XAI_API_BASE",), ("XAI_API_KEY",)),
    _p("mistral", "https://api.mistral.ai/v1", ("MISTRAL_API_BASE",), ("MISTRAL_API_KEY",)),
    _p("cerebras", "https://api.cerebras.ai/v1", ("CEREBRAS_API_BASE",), ("CEREBRAS_API_KEY",)),
    _p("deepinfra", "https://api.deepinfra.com/v1/openai", ("DEEPINFRA_API_BASE",), ("DEEPINFRA_API_KEY",)),
    _p(
        "perplexity",
        "https://api.perplexity.ai",
        ("PERPLEXITY_API_BASE",),
        ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
    ),
    _p("nvidia_nim", "https://integrate.api.nvidia.com/v1", ("NVIDIA_NIM_API_BASE",), ("NVIDIA_NIM_API_KEY",)),
    _p("sambanova", "https://api.sambanova.ai/v1", ("SAMBANOVA_API_BASE",), ("SAMBANOVA_API_KEY",)),
    _p("nebius", "https://api.studio.nebius.ai/v1", ("NEBIUS_API_BASE",), ("NEBIUS_API_KEY",)),
    # self-hosted servers: the base is the user's, a key only if the server was started with one
    _p("hosted_vllm", None, ("HOSTED_VLLM_API_BASE",), ("HOSTED_VLLM_API_KEY",), key_required=False),
    _p("lm_studio", None, ("LM_STUDIO_API_BASE",), ("LM_STUDIO_API_KEY",), key_required=False),
    _p("llamafile", "http://127.0.0.1:8080/v1", ("LLAMAFILE_API_BASE",), ("LLAMAFILE_API_KEY",), key_required=False),
    _p(
        "ollama_chat",
        "http://localhost:11434",
        ("OLLAMA_API_BASE",),
        ("OLLAMA_API_KEY",),
        key_required=False,
        base_suffix="/v1",
    ),
    _p("litellm_proxy", None, ("LITELLM_PROXY_API_BASE",), ("LITELLM_PROXY_API_KEY",), key_required=False),
]

# fields of a providers.json entry that change nothing for a plain chat request of ours (we send no
# max_tokens, so param_mappings of it do not matter); an entry with anything else (custom headers,
# parameter constraints, special handling) is left to litellm
_PLAIN_FIELDS = {"base_url", "api_key_env", "api_base_env", "param_mappings", "supported_endpoints", "provider_info"}


def _from_litellm_json() -> list[Provider]:
    package = litellm_package()
    path = package / "llms" / "openai_like" / "providers.json" if package else None
    if path is None or not path.is_file():
        return []
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found = []
    for name, entry in table.items():
        if not isinstance(entry, dict) or set(entry) - _PLAIN_FIELDS or not entry.get("base_url"):
            continue
        if "/v1/chat/completions" not in entry.get("supported_endpoints", ["/v1/chat/completions"]):
            continue
        base_vars = (entry["api_base_env"],) if entry.get("api_base_env") else ()
        key_vars = (entry["api_key_env"],) if entry.get("api_key_env") else ()
        found.append(Provider(name, str(entry["base_url"]), base_vars, key_vars))
    return found


@cache
def providers() -> dict[str, Provider]:
    """Every OpenAI-compatible provider by litellm's name for it (the built-in entries win)."""
    table = {p.name: p for p in _from_litellm_json()}
    table.update((p.name, p) for p in _BUILT_IN)
    return table
