"""Three service processes behind one real redis-server (REDIS_URL), as Cloud Run instances
behind Memorystore: one rate limit per client across all three, one token budget under 200
concurrent calls, and Redis stopped mid-load and started again.

Everything on 127.0.0.1: the baked service's Dockerfile CMD (tests/processes.py), its fake
upstream, and its tests/fakes/redis_server (which execs redis-server). Clients are told apart by
X-Forwarded-For, as Cloud Run's front end reports them. The figures go to .cache/reliability.json.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import require
from tests.processes import Process, Processes, Service, get, log_entries, service_env, wait_for
from tests.reliability_report import record

pytestmark = pytest.mark.slow

LIMIT = 30  # requests a minute per client
MESSAGE = " ".join(["word"] * 12)
SYSTEM_PROMPT = "Be brief."
MAX_TOKENS = 12
# What each call holds: its cap plus a quarter of its input's characters (message and prompt).
RESERVATION = MAX_TOKENS + math.ceil((len(MESSAGE) + len(SYSTEM_PROMPT)) / 4)
BUDGET = 1000  # the service's tokens a day
CALLS = 200


@pytest.fixture(scope="module")
def redis(started: Processes, tmp_path_factory: pytest.TempPathFactory) -> Process:
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    data = tmp_path_factory.mktemp("redis-data")
    return started.fake("redis", "redis_server", "--dir", str(data))


@pytest.fixture(scope="module")
def services(started: Processes, upstream: Process, redis: Process) -> list[Service]:
    env = service_env(upstream, timeout=5) | {
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "RATE_LIMIT_PER_MINUTE": str(LIMIT),
        "TOKEN_BUDGET_PER_DAY": str(BUDGET),
        "SYSTEM_PROMPT": SYSTEM_PROMPT,
    }
    instances = [started.service(f"service-shared-{n}", **env) for n in range(3)]
    for service in instances:
        wait_for(f"{service.url}/ready", 200)
    return instances


def client(name: int, net: str = "203.0.113") -> dict[str, str]:
    """A caller with its own address (documentation ranges, never routed): its own limit."""
    return {"X-Forwarded-For": f"{net}.{name}"}


async def send_all(
    services: list[Service], count: int, request: Callable[[httpx.AsyncClient, str], object]
) -> list[httpx.Response]:
    """`count` requests at once, spread round-robin over the three instances."""
    async with httpx.AsyncClient(timeout=30) as http:
        calls = [request(http, services[i % 3].url) for i in range(count)]
        return list(await asyncio.gather(*calls))  # type: ignore[call-overload]


def budget_reads(services: list[Service], who: int, count: int) -> list[httpx.Response]:
    """GET /v1/budget (rate limited like every /v1 route, spends no tokens) from one client."""
    return asyncio.run(
        send_all(
            services, count, lambda http, url: http.get(f"{url}/v1/budget", headers=client(who))
        )
    )


def test_one_rate_limit_per_client_across_three_instances(services: list[Service]) -> None:
    answers = budget_reads(services, who=1, count=3 * LIMIT)
    by_status = Counter(answer.status_code for answer in answers)
    record("shared_limit", {"limit": LIMIT, "sent": 3 * LIMIT, "accepted": by_status[200]})
    assert set(by_status) <= {200, 429}
    assert LIMIT <= by_status[200] <= LIMIT + len(services)  # not LIMIT per instance
    refused = next(a for a in answers if a.status_code == 429)
    assert 0 < int(refused.headers["retry-after"]) <= 60
    # Another client has a limit of its own.
    assert Counter(a.status_code for a in budget_reads(services, who=2, count=3))[200] == 3


def test_budget_holds_under_200_concurrent_calls_on_three_instances(
    services: list[Service],
) -> None:
    """Spend passes the budget by at most one reservation (the one that crossed it), and every
    admitted call was charged exactly what the upstream reported."""

    callers = itertools.count(1)  # one call per client: the rate limit is not measured here

    def chat(http: httpx.AsyncClient, url: str) -> object:
        body = {"message": MESSAGE, "max_tokens": MAX_TOKENS}
        return http.post(f"{url}/v1/chat", json=body, headers=client(next(callers), "198.51.100"))

    answers = asyncio.run(send_all(services, CALLS, chat))
    by_status = Counter(answer.status_code for answer in answers)
    refusals = {a.json()["error"]["code"] for a in answers if a.status_code != 200}
    spent = get(f"{services[2].url}/v1/budget")[1]["service"]
    record(
        "shared_budget",
        {
            "calls": CALLS,
            "budget": BUDGET,
            "reservation": RESERVATION,
            "admitted": by_status[200],
            "spent": spent["spent"],
            "overspend": spent["spent"] - BUDGET,
        },
    )
    assert set(by_status) == {200, 429}, by_status
    assert refusals == {"budget_exhausted"}
    assert spent["reserved"] == 0  # every call settled
    usages = [a.json()["usage"] for a in answers if a.status_code == 200]
    assert spent["spent"] == sum(u["input_tokens"] + u["output_tokens"] for u in usages)
    assert spent["spent"] <= BUDGET + RESERVATION
    assert spent["spent"] >= BUDGET - RESERVATION  # and the budget was used, not left idle


def test_redis_stopped_mid_load_then_started_again(
    started: Processes, services: list[Service], redis: Process
) -> None:
    """No 500 and no crash while Redis is away: chats answer 503 budget_unavailable, the rate
    limit is each instance's own, /ready stays 200 saying degraded; one ERROR line per instance
    for the outage. Started again on its port, the shared limit is back without a restart."""

    async def load(seconds: float) -> list[tuple[int, str, float]]:
        """Chats and budget reads from many clients for `seconds`: (status, code, latency)."""
        seen: list[tuple[int, str, float]] = []
        deadline = time.monotonic() + seconds

        async def worker(n: int, http: httpx.AsyncClient) -> None:
            while time.monotonic() < deadline:
                url = services[n % 3].url
                begun = time.perf_counter()
                body = {"message": "hello", "max_tokens": 5}
                answer = await http.post(f"{url}/v1/chat", json=body, headers=client(n))
                code = answer.json()["error"]["code"] if answer.status_code != 200 else ""
                seen.append((answer.status_code, code, time.perf_counter() - begun))
                await asyncio.sleep(0.01)

        async with httpx.AsyncClient(timeout=30) as http:
            await asyncio.gather(*(worker(n, http) for n in range(10, 26)))
        return seen

    async def outage() -> tuple[list[tuple[int, str, float]], float]:
        running = asyncio.create_task(load(3.0))
        await asyncio.sleep(1.0)
        stopped_at = time.monotonic()
        await asyncio.to_thread(redis.stop)
        return await running, stopped_at

    during, _ = asyncio.run(outage())
    statuses = Counter(status for status, _, _ in during)
    codes = Counter(code for _, code, _ in during)
    readies = [get(f"{s.url}/ready") for s in services]
    fallback = budget_reads(services, who=3, count=3 * LIMIT)
    fallback_passed = sum(a.status_code != 429 for a in fallback)  # 503: past the limit, no budget

    # Started again where the services expect it: no restart of theirs.
    restarted_at = time.monotonic()
    again = started.fake("redis-again", "redis_server", "--dir", str(Path(redis.log).parent),
                         port=redis.port)  # fmt: skip
    # Each instance probes Redis again on its first request a retry interval after a failure.
    for service in services:
        wait_for(f"{service.url}/v1/budget", 200, seconds=10)
    recovered_after = time.monotonic() - restarted_at
    resumed_answers = budget_reads(services, who=4, count=3 * LIMIT)
    resumed = Counter(a.status_code for a in resumed_answers)
    readies_after = [get(f"{s.url}/ready") for s in services]
    record(
        "redis_outage",
        {
            "answers_during_load": dict(statuses),
            "codes": dict(codes),
            "max_latency_ms": round(1000 * max(latency for _, _, latency in during), 1),
            "fallback_accepted_of": [fallback_passed, 3 * LIMIT],
            "shared_accepted_after_restart": resumed[200],
            "seconds_until_shared_again": round(recovered_after, 2),
        },
    )
    assert 500 not in statuses
    assert set(statuses) <= {200, 429, 503}, statuses
    assert codes["budget_unavailable"] > 0  # fail closed
    assert all(status == 200 and body["degraded"] for status, body in readies), readies
    assert fallback_passed > LIMIT + len(services)  # each instance's own bucket
    assert LIMIT <= resumed[200] <= LIMIT + len(services), resumed
    assert all(status == 200 and not body["degraded"] for status, body in readies_after)
    assert again.alive()
    for service in services:
        assert service.alive()
        entries = log_entries(service.log)
        assert not [e for e in entries if "stack_trace" in e]
        errors = [e["message"] for e in entries if e["severity"] == "ERROR"]
        assert len(errors) == 1, errors  # one line for the outage, not one per request
        assert errors[0].startswith("Redis unavailable")
        assert any(e["message"].startswith("Redis answers again") for e in entries)
