"""The process's one Redis client (REDIS_URL), and whether Redis answers right now.

Only built when REDIS_URL is set; redis is imported here, never at module level, so a service
without Redis loads none of it. Every call is bounded by REDIS_TIMEOUT_SECONDS. After a failure,
calls skip Redis for RETRY_SECONDS (the callers' fallbacks answer at once), then one call probes
it again. An outage is one ERROR line when it starts and one WARNING line when it ends, however
many requests fell back in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from app.core.config import SERVICE_NAME, Settings
from app.core.logging import redact_value

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_SECONDS = 1.0
MAX_CONNECTIONS = 16  # per instance; Memorystore's Basic 1 GB tier allows 65,000 clients


class StoreUnavailable(Exception):
    """Redis did not answer (or is skipped after a recent failure)."""


class SharedStore:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        from redis.asyncio import ConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

        if settings.redis_url is None:
            raise ValueError("a shared store needs REDIS_URL")
        url = settings.redis_url.get_secret_value()
        if password := urlsplit(url).password:
            redact_value(password)
        options: dict[str, Any] = {}
        if settings.redis_ca_file is not None:
            if not url.startswith("rediss://"):
                raise ValueError("REDIS_CA_FILE needs a TLS URL: REDIS_URL=rediss://...")
            options["ssl_ca_certs"] = str(settings.redis_ca_file)
        self.timeout = settings.redis_timeout_seconds
        self.prefix = SERVICE_NAME
        # A few connections, reused: a burst of requests waits a moment for one instead of
        # opening (and TLS-handshaking) a connection each, which took longer than the timeout.
        # The wait is `_slots`, first come first served: redis-py's BlockingConnectionPool lets
        # a caller that just released a connection take it again ahead of the waiters, which
        # under steady load starved some past the timeout (a false outage). `run`'s timeout
        # bounds every call, so no socket timeout (redis-py's default is 5 s): with one,
        # redis-py wraps each write in asyncio.wait_for, on Python 3.11 a task per command.
        # One immediate retry, for a pooled connection that a Redis restart closed; no
        # backoff: the fallbacks beat waiting.
        pool = ConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            socket_timeout=None,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 1),
            **options,
        )
        self.client: Redis = Redis.from_pool(pool)
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._errors = (RedisError, OSError, TimeoutError)
        self.clock = clock
        self._down_since: float | None = None
        self._probe_at = 0.0
        self._checking: asyncio.Task[None] | None = None

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """`operation()` against Redis, bounded by the timeout; StoreUnavailable if it fails."""
        if self._down_since is not None:
            now = self.clock()
            if now < self._probe_at:
                raise StoreUnavailable("Redis is not answering")
            self._probe_at = now + RETRY_SECONDS  # one probe at a time; the others fall back
        try:
            async with asyncio.timeout(self.timeout), self._slots:
                result = await operation()
        except self._errors as error:
            self._failed(error)
            raise StoreUnavailable("Redis is not answering") from None
        if self._down_since is not None:
            logger.warning(
                "Redis answers again after %.1f s: shared rate limits and budgets resume",
                self.clock() - self._down_since,
            )
            self._down_since = None
        return result

    def _failed(self, error: Exception) -> None:
        now = self.clock()
        self._probe_at = now + RETRY_SECONDS
        if self._down_since is not None:
            return
        self._down_since = now
        logger.error(
            "Redis unavailable (%s: %s): rate limits fall back to this instance's buckets and "
            "token budgets answer 503 (unless BUDGET_FAIL_OPEN=1) until it answers; retried "
            "every %.0f s. Check REDIS_URL, REDIS_CA_FILE and the VPC egress to Redis",
            type(error).__name__,
            error,
            RETRY_SECONDS,
        )

    def start(self) -> None:
        """One PING in the background at startup: a wrong REDIS_URL is in the log (and /ready)
        at once, not at the first request."""
        self._checking = asyncio.create_task(self._check())

    async def _check(self) -> None:
        with suppress(StoreUnavailable):
            await self.run(self.client.ping)

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
        await self.client.aclose()


def degraded_fields(state: Any) -> dict[str, bool]:
    """For /ready with REDIS_URL: `degraded` while Redis does not answer and this instance runs
    on its fallbacks. Nothing without REDIS_URL."""
    store: SharedStore | None = getattr(state, "shared_store", None)
    return {} if store is None else {"degraded": store.degraded}
