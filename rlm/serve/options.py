"""What the operator of `rlm serve` decides, and the checks made before the server binds."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from rlm.errors import ConfigError

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


@dataclass
class ServeOptions:
    """What the operator decides: who may call, what is reachable on disk, and the limits."""

    api_key: str | None = None
    context_roots: list[Path] = field(default_factory=list)
    max_body_bytes: int = 32 * 2**20
    max_concurrent: int = 8
    # a run's wall-time limit when the operator set no --timeout: a server never runs one forever
    default_timeout_s: float = 600.0
    # uploads live in memory, so both their number, their total size and their age are capped
    max_files: int = 256
    max_upload_bytes: int = 512 * 2**20
    upload_ttl_s: float = 3600.0


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine (no key is needed then)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, options: ServeOptions) -> None:
    """A server reachable from other machines must have a key; roots must exist; limits be positive."""
    if not options.api_key and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without a key: set --serve-key KEY (or RLM_SERVE_KEY), "
            "or bind to 127.0.0.1 to serve this machine only"
        )
    for root in options.context_roots:
        if not root.is_dir():
            raise ConfigError(f"--context-root {root} is not a directory")
    limits = {
        "--max-concurrent": options.max_concurrent,
        "--max-body-mb": options.max_body_bytes,
        "--max-uploads-mb": options.max_upload_bytes,
        "--upload-ttl": options.upload_ttl_s,
    }
    for flag, value in limits.items():
        if value <= 0:
            raise ConfigError(f"{flag} must be positive")
