"""The per-client token bucket."""

from __future__ import annotations

import asyncio

from app.core.rate_limit import MemoryRateLimiter


def take(limiter: MemoryRateLimiter, client: str) -> float:
    return asyncio.run(limiter.acquire(client))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_a_burst_of_the_per_minute_limit_then_refuses() -> None:
    limiter = MemoryRateLimiter(per_minute=3, clock=Clock())
    assert [take(limiter, "a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert take(limiter, "a") > 0


def test_wait_is_the_time_until_the_next_token() -> None:
    limiter = MemoryRateLimiter(per_minute=60, clock=Clock())
    for _ in range(60):
        take(limiter, "a")
    assert take(limiter, "a") == 1.0


def test_tokens_refill_with_time() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(per_minute=2, clock=clock)
    take(limiter, "a")
    take(limiter, "a")
    assert take(limiter, "a") > 0
    clock.now += 30  # one token at 2 a minute
    assert take(limiter, "a") == 0.0
    assert take(limiter, "a") > 0


def test_clients_have_separate_buckets() -> None:
    limiter = MemoryRateLimiter(per_minute=1, clock=Clock())
    assert take(limiter, "a") == 0.0
    assert take(limiter, "b") == 0.0
    assert take(limiter, "a") > 0


def test_memory_is_bounded_by_forgetting_the_least_recent_client() -> None:
    limiter = MemoryRateLimiter(per_minute=1, clock=Clock(), max_clients=2)
    take(limiter, "a")
    take(limiter, "b")
    take(limiter, "c")  # evicts "a"
    assert take(limiter, "a") == 0.0
    assert take(limiter, "c") > 0
