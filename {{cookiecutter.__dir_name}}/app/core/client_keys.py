"""The client API keys allowed to call /v1/* (client_auth=api-key), one key per line.

Loaded like the OpenAI key: CLIENT_API_KEYS, else CLIENT_API_KEYS_FILE, else Secret Manager.
The file (a mounted secret on Cloud Run) is re-read when it changes and Secret Manager is asked
again after `refresh_seconds`, so adding or revoking a key needs a new secret version, no deploy.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from app.core.config import Settings
from app.core.logging import redact_value
from app.core.secrets import SecretSource, SecretUnavailable, resolve_secret


def parse_keys(text: str) -> tuple[bytes, ...]:
    keys = tuple(line.strip().encode() for line in text.splitlines() if line.strip())
    if not keys:
        raise SecretUnavailable("no client API keys configured (one key per line)")
    for key in keys:
        redact_value(key.decode())
    return keys


class ClientKeys:
    def __init__(
        self,
        settings: Settings,
        refresh_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = SecretSource(
            env_name="CLIENT_API_KEYS",
            value=settings.client_api_keys,
            file=settings.client_api_keys_file,
            secret=settings.client_api_keys_secret,
            version=settings.client_api_keys_secret_version,
            project=settings.google_cloud_project,
            emulator_host=settings.secret_manager_emulator_host,
        )
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._keys: tuple[bytes, ...] = ()
        self._stamp: object = None

    def _current_stamp(self) -> object:
        """Changes whenever the keys may have changed."""
        if self.source.value is not None:
            return "env"
        if self.source.file is not None:
            try:
                stat = self.source.file.stat()
            except OSError:
                return None
            return (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        return int(self.clock() // self.refresh_seconds)

    def keys(self) -> tuple[bytes, ...]:
        """The current keys; raises SecretUnavailable when none can be loaded."""
        stamp = self._current_stamp()
        if stamp is None or stamp != self._stamp:
            self._keys = parse_keys(resolve_secret(self.source))
            self._stamp = stamp
        return self._keys

    def is_valid(self, presented: str) -> bool:
        """Constant-time comparison against every key, so timing does not reveal a prefix."""
        candidate = presented.encode()
        matched = False
        for key in self.keys():
            matched |= hmac.compare_digest(key, candidate)
        return matched
