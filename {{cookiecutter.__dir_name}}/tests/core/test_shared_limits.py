"""The rate limit shared through a real redis-server: one limit per client for every instance,
this instance's buckets while Redis is away or slow, and the shared limit again once it is back.

Each `SharedStore` below is what one instance holds: its own connection pool to the same Redis.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.budget import build_budget
from app.core.config import SERVICE_NAME, Settings
from app.core.rate_limit import RateLimiter, build_rate_limiter
from app.core.shared_store import MAX_CONNECTIONS, RETRY_SECONDS, SharedStore
from tests.fakes.redis_server import RedisServer

STORE_LOGGER = "app.core.shared_store"


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())


def settings(url: str, per_minute: int = 5, **extra: Any) -> Settings:
    return Settings(redis_url=url, rate_limit_per_minute=per_minute, **extra)


def instances(count: int, config: Settings) -> list[tuple[SharedStore, RateLimiter]]:
    stores = [SharedStore(config) for _ in range(count)]
    return [(store, build_rate_limiter(config, store)) for store in stores]


async def close(pairs: list[tuple[SharedStore, RateLimiter]]) -> None:
    for store, _ in pairs:
        await store.close()


async def allowed(limiter: RateLimiter, client: str, attempts: int) -> int:
    return sum([await limiter.acquire(client) == 0.0 for _ in range(attempts)])


def test_three_instances_share_one_limit_per_client(redis: RedisServer) -> None:
    async def body() -> tuple[int, int, float]:
        pairs = instances(3, settings(redis.url, per_minute=5))
        limiters = [limiter for _, limiter in pairs]
        waits = [await limiters[i % 3].acquire("key:a") for i in range(12)]
        other = await allowed(limiters[1], "key:b", 7)
        await close(pairs)
        return sum(w == 0.0 for w in waits), other, max(waits)

    accepted, other_client, longest_wait = run(body)
    assert accepted == 5  # not 5 per instance
    assert other_client == 5  # each client has its own limit
    assert 0 < longest_wait <= 60  # a refusal says when the window has room


def test_limits_keys_are_namespaced_by_service_and_expire(redis: RedisServer) -> None:
    async def body() -> None:
        pairs = instances(1, settings(redis.url))
        await pairs[0][1].acquire("key:a")
        await close(pairs)

    run(body)
    keys = redis.cli("KEYS", "*").split()
    assert keys
    assert all(k.startswith(f"{SERVICE_NAME}:limits:") for k in keys)
    assert all(0 < int(redis.cli("TTL", key)) <= 120 for key in keys)


def test_redis_going_away_falls_back_to_instance_buckets_then_shares_again(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """One ERROR line for the whole outage, one line when it ends; no restart needed."""
    caplog.set_level(logging.INFO, logger=STORE_LOGGER)

    async def body() -> dict[str, Any]:
        pairs = instances(2, settings(redis.url, per_minute=3))
        (store, first), (_, second) = pairs
        shared_before = await allowed(first, "key:a", 2) + await allowed(second, "key:a", 2)
        redis.stop()
        started = time.perf_counter()
        during = [await first.acquire("key:a") for _ in range(20)]
        outage_seconds = time.perf_counter() - started
        degraded = store.degraded
        redis.start()
        await asyncio.sleep(RETRY_SECONDS + 0.1)
        shared_after = await allowed(first, "key:a", 2) + await allowed(second, "key:a", 2)
        recovered = not store.degraded
        await close(pairs)
        return locals()

    seen = run(body)
    assert seen["shared_before"] == 3
    # This instance's own bucket (3 a minute) answers while Redis is away, at once.
    assert sum(w == 0.0 for w in seen["during"]) == 3
    assert seen["outage_seconds"] < 1.0
    assert seen["degraded"]
    assert seen["recovered"]
    assert seen["shared_after"] == 3  # Redis restarted empty: one shared limit again
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # one for the outage, not one per request
    assert "fall back" in errors[0].getMessage()
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_more_callers_than_connections_take_turns_without_a_false_outage(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Four callers per pooled connection, each limit check, reservation and settlement back
    to back, as under steady load: every caller gets its turn within the timeout, so a healthy
    Redis is never reported down and no call falls back (a budget would answer 503)."""
    caplog.set_level(logging.INFO, logger=STORE_LOGGER)

    async def body() -> bool:
        config = settings(redis.url, per_minute=10**6, token_budget_per_day=10**9)
        store = SharedStore(config)
        limiter, budget = build_rate_limiter(config, store), build_budget(config, store)

        async def caller() -> None:
            for _ in range(40):
                assert await limiter.acquire("key:a") == 0.0
                await budget.settle(await budget.reserve("key:a", 10), 5)

        await asyncio.gather(*(caller() for _ in range(4 * MAX_CONNECTIONS)))
        await store.close()
        return store.degraded

    assert run(body) is False
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a Redis that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def test_a_redis_that_hangs_costs_one_timeout_per_retry_interval(silent_port: int) -> None:
    async def body() -> tuple[float, float, list[float]]:
        config = settings(f"redis://127.0.0.1:{silent_port}/0", redis_timeout_seconds=0.2)
        pairs = instances(1, config)
        limiter = pairs[0][1]
        started = time.perf_counter()
        waits = [await limiter.acquire("key:a")]
        first = time.perf_counter() - started
        started = time.perf_counter()
        waits += [await limiter.acquire("key:a") for _ in range(50)]
        rest = time.perf_counter() - started
        await close(pairs)
        return first, rest, waits

    first, rest, waits = run(body)
    assert 0.15 < first < 0.6  # bounded by REDIS_TIMEOUT_SECONDS
    assert rest < 0.2  # then the fallback answers at once until the next probe
    assert waits[:5] == [0.0] * 5  # from this instance's bucket


def test_auth_and_a_wrong_password(redis_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    password = "s3cret-redis-pass"
    with RedisServer(redis_dir, password=password) as server:

        async def body(url: str) -> tuple[int, bool]:
            pairs = instances(1, settings(url, per_minute=2))
            count = await allowed(pairs[0][1], "key:a", 4)
            degraded = pairs[0][0].degraded
            await close(pairs)
            return count, degraded

        assert run(lambda: body(server.url)) == (2, False)
        assert server.cli("KEYS", f"{SERVICE_NAME}:limits:*key:a*")  # counted in this Redis
        wrong = server.url.replace(password, "wrong-password")
        caplog.set_level(logging.ERROR, logger=STORE_LOGGER)
        assert run(lambda: body(wrong)) == (2, True)  # this instance's bucket
    assert len(caplog.records) == 1
    assert "wrong-password" not in caplog.text  # the log never names the URL's password


def test_tls_with_the_servers_ca_file(redis_dir: Path) -> None:
    """rediss:// with REDIS_CA_FILE, as Memorystore with in-transit encryption needs."""
    with RedisServer(redis_dir, tls=True) as server:
        assert server.ca_file is not None

        async def body(**extra: Any) -> bool:
            pairs = instances(1, settings(server.url, per_minute=2, **extra))
            await pairs[0][1].acquire("key:a")
            degraded = pairs[0][0].degraded
            await close(pairs)
            return degraded

        assert run(lambda: body(redis_ca_file=server.ca_file)) is False
        assert server.cli("DBSIZE") == "1"  # the window counter, written over TLS
        # Without the CA the certificate cannot be verified: no connection, the fallback answers.
        assert run(body) is True


def test_ca_file_needs_a_tls_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rediss://"):
        SharedStore(settings("redis://127.0.0.1:1/0", redis_ca_file=tmp_path / "ca.pem"))


def test_redis_url_must_be_a_redis_url() -> None:
    with pytest.raises(ValueError, match=r"redis:// or rediss://"):
        settings("http://127.0.0.1:6379")
