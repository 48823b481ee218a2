"""The client API keys allowed to call /v1/* (client_auth=api-key), one key per line.

Loaded like the OpenAI key: CLIENT_API_KEYS, else CLIENT_API_KEYS_FILE, else Secret Manager.
The keys are read again once they are CLIENT_KEYS_REFRESH_SECONDS old (30 s at most), from the
file or the secret alike and whatever the file's stat() says: a new version of a mounted secret
can keep the size and mtime of the old one, and on Cloud Run a mounted secret's stat() may not
change at all. So adding or revoking a key needs a new secret version, never a deploy.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable

from app.core.config import Settings
from app.core.logging import redact_value
from app.core.secrets import SecretSource, SecretUnavailable, resolve_secret

logger = logging.getLogger(__name__)


def key_id(key: str) -> str:
    """How logs and the rate limit name a key: a prefix of its hash, never the key."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def parse_keys(text: str) -> tuple[bytes, ...]:
    keys = tuple(line.strip().encode() for line in text.splitlines() if line.strip())
    if not keys:
        raise SecretUnavailable("no client API keys configured (one key per line)")
    for key in keys:
        redact_value(key.decode())
    return keys


class ClientKeys:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = SecretSource(
            env_name="CLIENT_API_KEYS",
            value=settings.client_api_keys,
            file=settings.client_api_keys_file,
            secret=settings.client_api_keys_secret,
            version=settings.client_api_keys_secret_version,
            project=settings.google_cloud_project,
            emulator_host=settings.secret_manager_emulator_host,
        )
        self.refresh_seconds = settings.client_keys_refresh_seconds
        self.clock = clock
        self.reason = "starting"  # why there are no keys; what the log says, not the caller
        self._keys: tuple[bytes, ...] = ()
        self._loaded_at: float | None = None
        self._loading = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return bool(self._keys)

    async def current(self) -> tuple[bytes, ...]:
        """The keys, read again first when they are due; SecretUnavailable when there are none."""
        await self.refresh()
        if not self._keys:
            raise SecretUnavailable(self.reason)
        return self._keys

    async def refresh(self) -> None:
        """Read the keys when they are older than the refresh period: once for all the requests
        that find them so."""
        if self._stale():
            async with self._loading:
                if self._stale():
                    await self.load()

    async def load(self) -> None:
        """Read the keys (off the event loop: a file or Secret Manager). A failure empties them,
        so a missing or emptied secret refuses every key rather than keeping revoked ones."""
        try:
            keys = parse_keys(await asyncio.to_thread(resolve_secret, self.source))
        except SecretUnavailable as error:
            self._keys = ()
            self.reason = f"client API keys unavailable: {error}"
            logger.error(self.reason)
        else:
            if keys != self._keys:
                logger.info("client API keys loaded", extra={"fields": {"keys": len(keys)}})
            self._keys, self.reason = keys, ""
        finally:
            self._loaded_at = self.clock()

    def _stale(self) -> bool:
        return self._loaded_at is None or self.clock() - self._loaded_at >= self.refresh_seconds

    async def is_valid(self, presented: str) -> bool:
        """Constant-time comparison against every key, so timing does not reveal a prefix."""
        candidate = presented.encode()
        matched = False
        for key in await self.current():
            matched |= hmac.compare_digest(key, candidate)
        return matched
