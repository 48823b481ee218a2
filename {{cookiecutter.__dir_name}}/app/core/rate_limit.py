"""Per-client rate limits: `build_rate_limiter(settings)` picks the store.

Without REDIS_URL, a token bucket per client in this instance's memory: Cloud Run runs several
instances, each with its own buckets, so the effective limit is per instance. With REDIS_URL, one
limit per client for all instances (app/core/shared_limits.py), with these buckets as its
fallback while Redis does not answer.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from app.core.config import Settings

if TYPE_CHECKING:
    from app.core.shared_store import SharedStore


class RateLimiter(Protocol):
    async def acquire(self, client: str) -> float:
        """Take one request from `client`'s allowance: 0.0 when allowed, else the seconds until
        the next one is."""
        ...


def build_rate_limiter(settings: Settings, store: SharedStore | None = None) -> RateLimiter:
    """Per instance, or shared through Redis when there is a store (REDIS_URL)."""
    local = MemoryRateLimiter(settings.rate_limit_per_minute)
    if store is None:
        return local
    from app.core.shared_limits import SharedRateLimiter

    return SharedRateLimiter(store, settings.rate_limit_per_minute, local)


@dataclass
class Bucket:
    tokens: float
    updated: float


class MemoryRateLimiter:
    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self.max_clients = max_clients
        # Least recently seen first, so memory stays bounded under many distinct clients.
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    async def acquire(self, client: str) -> float:
        """Take one token: 0 when allowed, else the seconds until a token is available."""
        now = self.clock()
        bucket = self._buckets.pop(client, None) or Bucket(self.capacity, now)
        self._buckets[client] = bucket
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate
