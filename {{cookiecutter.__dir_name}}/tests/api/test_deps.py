"""Who the caller is (for the rate limit) and the limit itself, through the HTTP API."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.requests import Request

from app.api.deps import client_ip
from app.api.routes import chat, health
from app.core.rate_limit import MemoryRateLimiter
from tests.conftest import MakeClient


def request_with(headers: dict[str, str]) -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return Request({"type": "http", "headers": raw, "client": ("10.1.2.3", 5000)})


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("6.6.6.6, 203.0.113.7", "203.0.113.7"),  # a client-supplied entry cannot win
        ("", "10.1.2.3"),
    ],
)
def test_client_ip_is_the_entry_the_front_end_appended(forwarded: str, expected: str) -> None:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    assert client_ip(request_with(headers)) == expected


def test_burst_then_429_with_retry_after(make_client: MakeClient, auth: dict[str, str]) -> None:
    client = make_client(RATE_LIMIT_PER_MINUTE="3")
    statuses = [
        client.post("/v1/chat", json={"message": "hi"}, headers=auth).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    limited = client.post("/v1/chat", json={"message": "hi"}, headers=auth)
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1


def test_the_limit_refills(make_client: MakeClient, auth: dict[str, str]) -> None:
    client = make_client()
    now = [0.0]
    client.app.state.rate_limiter = MemoryRateLimiter(1, clock=lambda: now[0])  # type: ignore[attr-defined]
    assert send(client, auth).status_code == 200
    assert send(client, auth).status_code == 429
    now[0] += 60
    assert send(client, auth).status_code == 200


def test_health_is_never_rate_limited(make_client: MakeClient) -> None:
    client = make_client(RATE_LIMIT_PER_MINUTE="1")
    assert [client.get("/health").status_code for _ in range(5)] == [200] * 5


def send(client: TestClient, auth: dict[str, str]) -> httpx.Response:
    return client.post("/v1/chat", json={"message": "hi"}, headers=auth)


def dependency_calls(dependant: Dependant) -> list[Callable[..., Any]]:
    calls: list[Callable[..., Any]] = []
    for sub in dependant.dependencies:
        assert sub.call is not None
        calls += [sub.call, *dependency_calls(sub)]
    return calls


def test_route_dependencies_run_on_the_event_loop() -> None:
    """FastAPI runs a plain `def` dependency in its threadpool, a hop per request that cut
    /ready to a third of /health's throughput: every dependency here is `async def`."""
    routes = [
        route
        for router in (chat.router, health.router)
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    calls = [call for route in routes for call in dependency_calls(route.dependant)]
    assert len(calls) >= 4  # settings, upstream (twice), the client guard
    assert [call.__name__ for call in calls if not inspect.iscoroutinefunction(call)] == []
