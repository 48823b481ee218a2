"""The per-client token bucket, behind the async `acquire` every limiter has."""

from __future__ import annotations

import asyncio

from app.core.config import Settings
from app.core.rate_limit import MemoryRateLimiter, RateLimiter, build_rate_limiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def take(limiter: RateLimiter, client: str, times: int = 1) -> list[float]:
    async def run() -> list[float]:
        return [await limiter.acquire(client) for _ in range(times)]

    return asyncio.run(run())


def test_the_default_limiter_holds_the_configured_limit_in_memory() -> None:
    limiter = build_rate_limiter(Settings(rate_limit_per_minute=2))
    assert isinstance(limiter, MemoryRateLimiter)
    assert take(limiter, "a", 3)[2] > 0


def test_allows_a_burst_of_the_per_minute_limit_then_refuses() -> None:
    limiter = MemoryRateLimiter(per_minute=3, clock=Clock())
    assert take(limiter, "a", 3) == [0.0, 0.0, 0.0]
    assert take(limiter, "a")[0] > 0


def test_wait_is_the_time_until_the_next_token() -> None:
    limiter = MemoryRateLimiter(per_minute=60, clock=Clock())
    take(limiter, "a", 60)
    assert take(limiter, "a") == [1.0]


def test_tokens_refill_with_time() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(per_minute=2, clock=clock)
    take(limiter, "a", 2)
    assert take(limiter, "a")[0] > 0
    clock.now += 30  # one token at 2 a minute
    assert take(limiter, "a") == [0.0]
    assert take(limiter, "a")[0] > 0


def test_clients_have_separate_buckets() -> None:
    limiter = MemoryRateLimiter(per_minute=1, clock=Clock())
    assert take(limiter, "a") == [0.0]
    assert take(limiter, "b") == [0.0]
    assert take(limiter, "a")[0] > 0


def test_memory_is_bounded_by_forgetting_the_least_recent_client() -> None:
    limiter = MemoryRateLimiter(per_minute=1, clock=Clock(), max_clients=2)
    for client in ("a", "b", "c"):  # "c" evicts "a"
        take(limiter, client)
    assert take(limiter, "a") == [0.0]
    assert take(limiter, "c")[0] > 0
