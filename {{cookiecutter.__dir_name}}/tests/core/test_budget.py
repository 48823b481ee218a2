"""Daily token budgets, counted in this instance's memory and in a real Redis (same rules).

A call is let through while spend + reservations in flight is below a budget; settling replaces
its reservation with what it used; the UTC day starts from zero; over budget is a 429 with
Retry-After to the next UTC midnight; a Redis that does not answer is a 503 unless told otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from app.core.budget import (
    MemoryLedger,
    RedisLedger,
    Reservation,
    TokenBudget,
    build_budget,
    call_tokens,
)
from app.core.config import SERVICE_NAME, Settings
from app.core.errors import ApiError
from app.core.shared_store import SharedStore
from tests.fakes.redis_server import RedisServer

LATE = datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC)  # 30 s before a UTC midnight


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())


class Clock:
    def __init__(self, now: datetime = LATE) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


Make = Callable[..., Awaitable[TokenBudget]]
RunWith = Callable[[Callable[[Make], Awaitable[Any]]], Any]


@pytest.fixture(params=["memory", "redis"])
def run_with(request: pytest.FixtureRequest) -> RunWith:
    """Run `body(make)`, where `make(clock, **budgets)` builds a budget on this instance's memory
    or on the test's real Redis (its connections closed in the same event loop)."""

    def run_body(body: Callable[[Make], Awaitable[Any]]) -> Any:
        stores: list[SharedStore] = []

        async def make(clock: Clock | None = None, **budgets: Any) -> TokenBudget:
            if request.param == "memory":
                return TokenBudget(Settings(**budgets), MemoryLedger(), clock or Clock())
            redis: RedisServer = request.getfixturevalue("redis")
            settings = Settings(redis_url=redis.url, **budgets)
            stores.append(SharedStore(settings))
            return TokenBudget(settings, RedisLedger(stores[-1]), clock or Clock())

        async def main() -> Any:
            try:
                return await body(make)
            finally:
                for store in stores:
                    await store.close()

        return asyncio.run(main())

    return run_body


def test_a_call_reserves_its_output_cap_plus_a_quarter_of_its_input_characters() -> None:
    assert call_tokens(100, 0) == 100
    assert call_tokens(100, 9) == 103  # ceil(9 / 4)


def test_calls_pass_until_the_client_budget_is_used_then_429_until_midnight(
    run_with: RunWith,
) -> None:
    async def body(make_budget: Make) -> tuple[list[Reservation], ApiError]:
        budget = await make_budget(client_token_budget_per_day=100)
        held = [await budget.reserve("key:a", 60), await budget.reserve("key:a", 60)]
        with pytest.raises(ApiError) as refused:
            await budget.reserve("key:a", 1)
        await budget.reserve("key:b", 60)  # another client's budget is its own
        return held, refused.value

    held, refused = run_with(body)
    assert [r.tokens for r in held] == [60, 60]  # 60 < 100: the second may pass it, by one call
    assert (refused.status, refused.code) == (429, "budget_exhausted")
    assert refused.headers["Retry-After"] == "30"


def test_settling_charges_the_usage_and_frees_the_rest(run_with: RunWith) -> None:
    async def body(make_budget: Make) -> list[Any]:
        budget = await make_budget(client_token_budget_per_day=100)
        first = await budget.reserve("key:a", 80)
        report = await budget.settle(first, 10)
        second = await budget.reserve("key:a", 80)  # 10 spent: room again
        return [report, second, await budget.report("key:a")]

    report, second, now = run_with(body)
    assert report.client.spent == 10
    assert report.client.reserved == 0
    assert report.client.remaining == 90
    assert second.tokens == 80
    assert (now.client.spent, now.client.reserved, now.client.remaining) == (10, 80, 10)


def test_usage_that_never_came_keeps_the_reservation(run_with: RunWith) -> None:
    async def body(make_budget: Make) -> Any:
        budget = await make_budget(client_token_budget_per_day=100)
        return await budget.settle(await budget.reserve("key:a", 70), None)

    report = run_with(body)
    assert (report.client.spent, report.client.reserved) == (70, 0)


def test_the_service_budget_counts_every_client(run_with: RunWith) -> None:
    async def body(make_budget: Make) -> ApiError:
        budget = await make_budget(token_budget_per_day=50)
        await budget.settle(await budget.reserve("key:a", 40), 30)
        await budget.settle(await budget.reserve("key:b", 40), 30)
        with pytest.raises(ApiError) as refused:
            await budget.reserve("key:c", 1)
        return refused.value

    refused = run_with(body)
    assert refused.code == "budget_exhausted"
    assert "service" in refused.message


def test_a_new_utc_day_starts_from_zero(run_with: RunWith) -> None:
    async def body(make_budget: Make) -> tuple[Reservation, Any]:
        clock = Clock()
        budget = await make_budget(clock, client_token_budget_per_day=10)
        yesterday = await budget.reserve("key:a", 50)
        clock.now = datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)
        today = await budget.reserve("key:a", 5)
        await budget.settle(yesterday, 50)  # charged to the day it was reserved on
        return today, await budget.report("key:a")

    today, report = run_with(body)
    assert today.day == "2026-03-02"
    assert (report.day, report.client.spent, report.client.reserved) == ("2026-03-02", 0, 5)


def test_no_budget_set_counts_spend_but_refuses_nothing(run_with: RunWith) -> None:
    async def body(make_budget: Make) -> Any:
        budget = await make_budget()
        for _ in range(5):
            await budget.settle(await budget.reserve("key:a", 10**9), 10**9)
        return await budget.report("key:a")

    report = run_with(body)
    assert report.client.spent == 5 * 10**9
    assert report.client.remaining is None


@pytest.mark.parametrize("lost", [False, True], ids=["kept", "lost-before-settling"])
def test_redis_keys_are_namespaced_by_service_and_expire(redis: RedisServer, lost: bool) -> None:
    """Also when Redis lost the day's hashes between a reservation and its settlement (a
    restarted Basic tier instance, an eviction): the settlement that makes them again sets
    their TTL."""

    async def body() -> None:
        settings = Settings(redis_url=redis.url, client_token_budget_per_day=10)
        store = SharedStore(settings)
        budget = build_budget(settings, store)
        reservation = await budget.reserve("key:a", 5)
        if lost:
            assert redis.cli("FLUSHALL") == "OK"
        await budget.settle(reservation, 3)
        await store.close()

    run(body)
    keys = sorted(redis.cli("KEYS", "*").split())
    day = datetime.now(UTC).date().isoformat()
    prefix = f"{SERVICE_NAME}:budget:{day}"
    assert keys == [f"{prefix}:client:key:a", f"{prefix}:service"]
    assert all(86400 < int(redis.cli("TTL", key)) <= 2 * 86400 for key in keys)


def test_concurrent_calls_on_three_instances_pass_the_budget_by_at_most_one_reservation(
    redis: RedisServer,
) -> None:
    """200 reservations at once from three instances: the Lua script checks and holds atomically."""
    budget_tokens, reservation, used = 1000, 120, 90

    async def body() -> tuple[int, int]:
        settings = Settings(redis_url=redis.url, client_token_budget_per_day=budget_tokens)
        stores = [SharedStore(settings) for _ in range(3)]
        budgets = [build_budget(settings, store) for store in stores]

        async def call(index: int) -> bool:
            budget = budgets[index % 3]
            try:
                held = await budget.reserve("key:a", reservation)
            except ApiError:
                return False
            await asyncio.sleep(0.01)
            await budget.settle(held, used)
            return True

        admitted = sum(await asyncio.gather(*(call(i) for i in range(200))))
        spent = (await budgets[0].report("key:a")).client.spent
        for store in stores:
            await store.close()
        return admitted, spent

    admitted, spent = run(body)
    assert spent == admitted * used
    assert spent <= budget_tokens + reservation
    assert admitted >= budget_tokens // reservation  # the budget was not left unused either


@pytest.mark.parametrize(
    ("fail_open", "budgets"), [(False, {}), (True, {"token_budget_per_day": 10})]
)
def test_redis_down_lets_calls_through_uncounted_only_when_nothing_or_fail_open(
    redis: RedisServer, fail_open: bool, budgets: dict[str, int]
) -> None:
    async def body() -> Reservation:
        settings = Settings(redis_url=redis.url, budget_fail_open=fail_open, **budgets)
        store = SharedStore(settings)
        redis.stop()
        held = await build_budget(settings, store).reserve("key:a", 5)
        await store.close()
        return held

    assert run(body).counted is False


def test_redis_down_fails_closed_with_503(redis: RedisServer) -> None:
    async def body() -> ApiError:
        settings = Settings(redis_url=redis.url, client_token_budget_per_day=10)
        store = SharedStore(settings)
        budget = build_budget(settings, store)
        held = await budget.reserve("key:a", 5)
        redis.stop()
        assert await budget.settle(held, 1) is None  # the reservation stays in Redis
        with pytest.raises(ApiError) as refused:
            await budget.reserve("key:a", 5)
        await store.close()
        return refused.value

    refused = run(body)
    assert (refused.status, refused.code) == (503, "budget_unavailable")
    assert "Retry-After" in refused.headers
