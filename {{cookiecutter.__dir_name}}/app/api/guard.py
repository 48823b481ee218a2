"""The guard on every path under /v1: {{ "a valid client key, then " if cookiecutter.client_auth == "api-key" else "" }}the per-client rate limit.

A pure ASGI middleware on the path prefix, not a FastAPI dependency: a dependency guards only
the routes that ask for it (or the routers it is attached to), so a route added straight onto
the app, a Starlette route or a mounted sub-application would be public. Here the path decides,
before any routing, whatever answers below it. The guard sets `request.state.client` and the
`current_client` context variable for the routes and log lines below it (`ClientDep` reads it).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import ErrorBody, api_error_response
from app.api.identity import {{ "caller_identity, " if cookiecutter.client_auth == "iam" else "" }}client_address
{%- if cookiecutter.client_auth == "api-key" %}
from app.core.client_keys import ClientKeys, key_id
{%- endif %}
from app.core.context import current_client
from app.core.errors import ApiError
from app.core.rate_limit import RateLimiter
{%- if cookiecutter.client_auth == "api-key" %}
from app.core.secrets import SecretUnavailable
{%- endif %}

logger = logging.getLogger(__name__)

GUARDED_PREFIX = "/v1"
{%- if cookiecutter.client_auth == "api-key" %}
MISSING_KEY = "send your API key as Authorization: Bearer <key> or X-API-Key: <key>"
# OpenAPI: either header carries the key.
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "a client API key"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
GUARD_ERRORS = {"401": "Unauthorized", "429": "Too Many Requests", "503": "Service Unavailable"}
{%- else %}
GUARD_ERRORS = {"429": "Too Many Requests"}
{%- endif %}


def guarded(path: str) -> bool:
    return path == GUARDED_PREFIX or path.startswith(GUARDED_PREFIX + "/")


def route_path(scope: Scope) -> str:
    """The path Starlette routes on (its get_route_path): without the root_path prefix."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (path == root or path[len(root)] == "/"):
        return path[len(root) :]
    return path


class ClientGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not guarded(route_path(scope)):
            await self.app(scope, receive, send)
            return
        try:
            client = await self.client(scope)
        except ApiError as error:
            if scope["type"] == "websocket":  # refused before the handshake: a 403 to the caller
                await send({"type": "websocket.close", "code": 1008})
            else:
                await api_error_response(error)(scope, receive, send)
            return
        scope.setdefault("state", {})["client"] = client
        token = current_client.set(client)
        try:
            await self.app(scope, receive, send)
        finally:
            current_client.reset(token)

    async def client(self, scope: Scope) -> str:
        """The caller's client id, once it may go on; ApiError (401, 429, 503) when not."""
        state = scope["app"].state
        headers = Headers(scope=scope)
        address = client_address(scope, headers, state.settings.trusted_proxy_hops)
{%- if cookiecutter.client_auth == "api-key" %}
        key = presented_key(headers)
        keys: ClientKeys = state.client_keys
        try:
            valid = key is not None and await keys.is_valid(key)
        except SecretUnavailable:  # logged when the load failed; /ready says so too
            raise ApiError(503, "client_keys_unavailable", keys.reason) from None
        if key is None or not valid:
            # Refusals are charged to the address, so guessing keys is rate limited too; the
            # ones over the limit are not logged, so a flood cannot flood the log.
            await take_token(state.rate_limiter, address)
            fields = {"key_id": key_id(key) if key else None, "client": address}
            logger.warning("client key refused", extra={"fields": fields})
            raise ApiError(401, "unauthorized", "the API key is not valid" if key else MISSING_KEY)
        client = key_id(key)
{%- elif cookiecutter.client_auth == "iam" %}
        identity = caller_identity(headers)
        client = f"user:{identity}" if identity else address
{%- else %}
        client = address
{%- endif %}
        await take_token(state.rate_limiter, client)
        return client


async def take_token(limiter: RateLimiter, client: str) -> None:
    """One request from `client`; 429 with Retry-After when its allowance is used up."""
    wait = await limiter.acquire(client)
    if wait > 0:
        retry_after = str(max(1, round(wait + 0.5)))
        raise ApiError(429, "rate_limited", "too many requests", {"Retry-After": retry_after})
{%- if cookiecutter.client_auth == "api-key" %}


def presented_key(headers: Headers) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None
{%- endif %}


def document_guard(app: FastAPI) -> None:
    """OpenAPI states the guard on every /v1 operation, whoever wrote the route: the statuses it
    answers{{ " and the two ways to send the key" if cookiecutter.client_auth == "api-key" else "" }}."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()  # FastAPI's own schema (it caches it), amended in place
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(error_schemas())
{%- if cookiecutter.client_auth == "api-key" %}
        components["securitySchemes"] = SECURITY_SCHEMES
{%- endif %}
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values() if guarded(path) else ():
{%- if cookiecutter.client_auth == "api-key" %}
                operation["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
{%- endif %}
                responses = operation.setdefault("responses", {})
                for status, phrase in GUARD_ERRORS.items():
                    responses.setdefault(status, {"description": phrase, "content": error})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def error_schemas() -> dict[str, Any]:
    """ErrorBody and what it refers to, as OpenAPI components."""
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"ErrorBody": schema, **schema.pop("$defs", {})}
