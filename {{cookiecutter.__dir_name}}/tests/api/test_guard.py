"""Every path under /v1 is guarded by construction: this walks the app's routes (mounts
included) and probes each one, so it covers routes added later too, however they are added.

{%- if cookiecutter.client_auth == "api-key" %}
client_auth=api-key: no key or a wrong key is refused (401) before the route runs, and each
client's requests are rate limited (429 with Retry-After).
{%- else %}
client_auth={{ cookiecutter.client_auth }}: each client's requests are rate limited (429 with Retry-After).
{%- endif %}
Paths outside /v1 are open and few: each is listed in OPEN_PATHS, so adding one is a decision
made here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.api.deps import ClientDep
from app.api.guard import route_path
{%- if cookiecutter.client_auth == "api-key" %}
from app.core.client_keys import key_id
{%- endif %}
from app.core.context import current_client
from app.core.rate_limit import MemoryRateLimiter
from tests.conftest import {{ "CLIENT_KEY, " if cookiecutter.client_auth == "api-key" else "" }}MakeClient
from tests.routes import GUARDED, Probe, walk

OPEN_PATHS = {"/health", "/ready", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def guarded_probes(app: FastAPI) -> list[Probe]:
    probes = [p for p in walk(app.routes) if GUARDED.fullmatch(p.path) and p.method != "HEAD"]
    assert probes, "no route under /v1 at all"
    return probes


def send(client: TestClient, probe: Probe, headers: dict[str, str]) -> int:
    """The status the probe gets (403 for a websocket refused before its handshake)."""
    if probe.method == "WEBSOCKET":
        try:
            with client.websocket_connect(probe.path, headers=headers):
                return 101
        except WebSocketDisconnect as refused:
            return 403 if refused.code == 1008 else 500
    response = client.request(probe.method, probe.path, headers=headers, json={"message": "hi"})
    if response.status_code in (401, 429):
        assert set(response.json()) == {"error"}  # the error shape, whoever wrote the route
    return response.status_code


@dataclass
class Added:
    """Routes a user might add, each way there is, counting the calls that reach them."""

    calls: int = 0

    def install(self, app: FastAPI) -> None:
        router = APIRouter(prefix="/v1/extra")

        @router.post("/summarize")
        async def summarize(request: Request, client: ClientDep) -> dict[str, str | None]:
            self.calls += 1
            return {
                "client": client,
                "state": request.state.client,
                "context": current_client.get(),  # what log lines written here read
            }

        app.include_router(router)

        @app.get("/v1/direct/{item}")
        async def direct(item: str) -> dict[str, str]:
            self.calls += 1
            return {"item": item}

        async def added() -> dict[str, str]:
            self.calls += 1
            return {"added": "yes"}

        app.add_api_route("/v1/added", added, methods=["PUT"])

        async def plain(request: Request) -> Response:
            self.calls += 1
            return PlainTextResponse("starlette route")

        app.add_route("/v1/starlette", plain, methods=["GET", "DELETE"])

        async def inner(request: Request) -> Response:
            self.calls += 1
            return JSONResponse({"mounted": True})

        app.mount("/v1/mounted", Starlette(routes=[Route("/inner/{name}", inner)]))

        @app.websocket("/v1/socket")
        async def socket(websocket: WebSocket) -> None:
            self.calls += 1
            await websocket.accept()
            await websocket.close()


@pytest.fixture
def added() -> Added:
    return Added()


@pytest.fixture
def guarded_client(make_client: MakeClient, added: Added) -> TestClient:
    client = make_client()
    added.install(client.app)  # type: ignore[arg-type]
    return client


def test_the_walk_finds_the_shipped_and_the_added_routes(guarded_client: TestClient) -> None:
    paths = {probe.path for probe in guarded_probes(guarded_client.app)}  # type: ignore[arg-type]
    assert "/v1/chat" in paths
    assert {
        "/v1/extra/summarize",
        "/v1/direct/1",
        "/v1/added",
        "/v1/starlette",
        "/v1/mounted/",
        "/v1/mounted/inner/1",
        "/v1/socket",
    } <= paths
{%- if cookiecutter.client_auth == "api-key" %}


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}],
    ids=["no-key", "wrong-x-api-key", "wrong-bearer"],
)
def test_every_route_under_v1_refuses_a_missing_or_wrong_key(
    guarded_client: TestClient, added: Added, headers: dict[str, str]
) -> None:
    """401 (or a refused websocket) on every route, and no route ran."""
    app: FastAPI = guarded_client.app  # type: ignore[assignment]
    app.state.rate_limiter = MemoryRateLimiter(1_000_000)  # only the key is tested here
    refused = {p: send(guarded_client, p, headers) for p in guarded_probes(app)}
    assert {p: s for p, s in refused.items() if s not in (401, 403)} == {}
    assert added.calls == 0


def test_every_route_under_v1_accepts_a_valid_key(guarded_client: TestClient, added: Added) -> None:
    app: FastAPI = guarded_client.app  # type: ignore[assignment]
    answered = {p: send(guarded_client, p, {"X-API-Key": CLIENT_KEY}) for p in guarded_probes(app)}
    assert {p: s for p, s in answered.items() if s in (401, 403, 429)} == {}
    assert added.calls == 7  # each added route ran once (the bare mount has no route: 404)
{%- endif %}


def test_every_route_under_v1_is_rate_limited(guarded_client: TestClient, added: Added) -> None:
    """With one request a minute, the second request to each route is 429 with Retry-After."""
    app: FastAPI = guarded_client.app  # type: ignore[assignment]
    headers = {{ '{"X-API-Key": CLIENT_KEY}' if cookiecutter.client_auth == "api-key" else "{}" }}
    limited = {}
    for probe in guarded_probes(app):
        app.state.rate_limiter = MemoryRateLimiter(1)  # a fresh allowance of one per route
        first = send(guarded_client, probe, headers)
        method = "GET" if probe.method == "WEBSOCKET" else probe.method  # 429 before any upgrade
        second = guarded_client.request(method, probe.path, headers=headers)
        limited[probe] = (first, second.status_code, second.headers.get("retry-after"))
    assert {p: r for p, r in limited.items() if r[0] == 429 or r[1] != 429 or not r[2]} == {}


def test_the_guard_sees_the_path_starlette_routes_on() -> None:
    """Under a root_path (uvicorn --root-path) the routed path drops that prefix; so does the
    guard, and a prefix that is not a whole segment is not a root path at all."""
    assert route_path({"path": "/api/v1/chat", "root_path": "/api"}) == "/v1/chat"
    assert route_path({"path": "/apiv1/chat", "root_path": "/api"}) == "/apiv1/chat"
    assert route_path({"path": "/v1/chat", "root_path": ""}) == "/v1/chat"


def test_an_unrouted_path_under_v1_is_guarded_and_v1_lookalikes_are_not(
    make_client: MakeClient,
) -> None:
    client = make_client(RATE_LIMIT_PER_MINUTE="1")
    assert client.get("/v1/no-such-route").status_code == {{ "401" if cookiecutter.client_auth == "api-key" else "404" }}
    assert client.get("/v1-no-such-route").status_code == 404  # not under /v1
    assert client.get("/v1x").status_code == 404
{%- if cookiecutter.client_auth != "api-key" %}
    assert client.get("/v1/no-such-route").status_code == 429  # counted all the same
{%- endif %}


def test_the_guard_names_the_client_for_the_route(guarded_client: TestClient) -> None:
    headers = {"X-Forwarded-For": "203.0.113.9"{{ ', "X-API-Key": CLIENT_KEY' if cookiecutter.client_auth == "api-key" else "" }}}
    reply = guarded_client.post("/v1/extra/summarize", headers=headers)
    assert reply.status_code == 200
    assert reply.json()["client"] == reply.json()["state"] == reply.json()["context"]
    assert reply.json()["client"] == {{ 'key_id(CLIENT_KEY)' if cookiecutter.client_auth == "api-key" else '"ip:203.0.113.9"' }}
{%- if cookiecutter.client_auth == "api-key" %}
    assert CLIENT_KEY not in reply.text
{%- endif %}


def test_paths_outside_v1_are_only_the_open_ones(make_client: MakeClient, added: Added) -> None:
    """A new route outside /v1 would be public: it must be listed here on purpose."""
    client = make_client(DOCS_ENABLED="1")
    added.install(client.app)  # type: ignore[arg-type]
    outside = {p.path for p in walk(client.app.routes) if not GUARDED.fullmatch(p.path)}  # type: ignore[attr-defined]
    assert outside <= OPEN_PATHS
    assert client.get("/health").status_code == 200


def test_openapi_documents_the_guard_on_every_v1_operation(
    make_client: MakeClient, added: Added
) -> None:
    client = make_client(DOCS_ENABLED="1")
    added.install(client.app)  # type: ignore[arg-type]
    schema = client.get("/openapi.json").json()
    operations = {
        (path, method): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }
    guarded = {key: op for key, op in operations.items() if GUARDED.fullmatch(key[0])}
    assert ("/v1/extra/summarize", "post") in guarded
    for (path, _), operation in operations.items():
        if not GUARDED.fullmatch(path):
            assert "security" not in operation
            continue
        assert "429" in operation["responses"]
{%- if cookiecutter.client_auth == "api-key" %}
        assert "401" in operation["responses"]
        assert operation["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}]
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert schema["components"]["securitySchemes"]["apiKeyHeader"]["name"] == "X-API-Key"
{%- else %}
        assert "security" not in operation  # the app checks no credentials in this mode
    assert "securitySchemes" not in schema.get("components", {})
{%- endif %}
