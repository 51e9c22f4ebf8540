"""Files uploaded through `/v1/files`: held in memory, so their number, total size and age are capped."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm.serve.openai_format import ApiError


@dataclass
class Upload:
    id: str
    filename: str
    data: bytes
    purpose: str
    created_at: int
    expires_at: float

    def describe(self) -> dict[str, Any]:
        """The OpenAI `file` object clients get back."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "expires_at": int(self.expires_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


class Uploads:
    """The server's uploads by id; every read purges the expired ones first, so none is served late."""

    def __init__(self, max_files: int, max_bytes: int, ttl_s: float) -> None:
        self.max_files, self.max_bytes, self.ttl_s = max_files, max_bytes, ttl_s
        self._by_id: dict[str, Upload] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Upload]:
        self.purge_expired()
        return iter(list(self._by_id.values()))

    def purge_expired(self, now: float | None = None) -> int:
        """Drops uploads past their expiry; returns how many went."""
        now = time.time() if now is None else now
        expired = [u.id for u in self._by_id.values() if u.expires_at <= now]
        for file_id in expired:
            del self._by_id[file_id]
        return len(expired)

    def add(self, filename: str, data: bytes, purpose: str) -> Upload:
        """Stores one file, or refuses with 429 when the count or byte cap would be passed."""
        self.purge_expired()
        if len(self._by_id) >= self.max_files:
            raise ApiError(429, f"this server holds at most {self.max_files} files; delete some", "too_many_files")
        held = sum(len(u.data) for u in self._by_id.values())
        if held + len(data) > self.max_bytes:
            raise ApiError(
                429,
                f"this server holds at most {self.max_bytes} bytes of uploads "
                f"({held} held, this file is {len(data)}); delete some",
                "uploads_full",
            )
        now = time.time()
        upload = Upload(
            id=f"file-{secrets.token_hex(12)}",
            filename=Path(filename).name,
            data=data,
            purpose=purpose,
            created_at=int(now),
            expires_at=now + self.ttl_s,
        )
        self._by_id[upload.id] = upload
        return upload

    def get(self, file_id: Any) -> Upload:
        self.purge_expired()
        upload = self._by_id.get(file_id) if isinstance(file_id, str) else None
        if upload is None:
            raise ApiError(404, f"no uploaded file with id {file_id!r}", "file_not_found", "rlm.file_ids")
        return upload

    def delete(self, file_id: Any) -> Upload:
        upload = self.get(file_id)
        del self._by_id[upload.id]
        return upload

    async def sweeping(self, app: object) -> AsyncIterator[None]:
        """An aiohttp cleanup context purging in the background too, so an idle server frees the memory."""

        async def sweep() -> None:
            while True:
                await asyncio.sleep(min(60.0, max(0.05, self.ttl_s / 4)))
                self.purge_expired()

        sweeper = asyncio.ensure_future(sweep())
        yield
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
