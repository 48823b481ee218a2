"""RATE_LIMIT_PER_MINUTE per client across every instance, counted in Redis (REDIS_URL).

The `limits` package's sliding window counter: two counters per client in Redis, checked and
bumped by one Lua script per request, so memory does not grow with the limit. While Redis does
not answer, this instance's own token buckets (app/core/rate_limit.py) take over.
"""

from __future__ import annotations

import time
from typing import Any

from app.core.rate_limit import MemoryRateLimiter
from app.core.shared_store import SharedStore, StoreUnavailable


class SharedRateLimiter:
    def __init__(self, store: SharedStore, per_minute: int, fallback: MemoryRateLimiter) -> None:
        from limits import RateLimitItemPerMinute
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import SlidingWindowCounterRateLimiter

        # The store's connection pool: one set of connections (and timeouts) for the process.
        pool: Any = store.client.connection_pool  # limits types its options as scalars
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=f"{store.prefix}:limits",
            connection_pool=pool,
        )
        self.store = store
        self.item = RateLimitItemPerMinute(per_minute)
        self.window = SlidingWindowCounterRateLimiter(storage)
        self.fallback = fallback

    async def acquire(self, client: str) -> float:
        """Take one request: 0 when allowed, else the seconds until the window has room."""
        try:
            if await self.store.run(lambda: self.window.hit(self.item, client)):
                return 0.0
            stats = await self.store.run(lambda: self.window.get_window_stats(self.item, client))
        except StoreUnavailable:
            return await self.fallback.acquire(client)
        return max(stats.reset_time - time.time(), 0.01)
