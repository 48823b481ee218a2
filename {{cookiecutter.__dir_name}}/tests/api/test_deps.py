"""The rate limit through the HTTP API, and the dependencies the routes share."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import httpx
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from app.core.rate_limit import MemoryRateLimiter
from app.main import create_app
from tests.conftest import MakeClient


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
    contexts = iter_route_contexts(create_app().routes)
    routes = [c.original_route for c in contexts if isinstance(c.original_route, APIRoute)]
    calls = [call for route in routes for call in dependency_calls(route.dependant)]
    assert len(calls) >= 4  # settings, upstream (twice), the client id
    assert [call.__name__ for call in calls if not inspect.iscoroutinefunction(call)] == []
