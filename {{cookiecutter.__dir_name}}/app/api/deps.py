"""Dependencies shared by the routes, as `Annotated` aliases.

They are `async def` unless they block: FastAPI runs a plain `def` dependency in its threadpool,
and that hop cut /ready's throughput to a third of /health's (measured here).
"""

from __future__ import annotations

{% if cookiecutter.client_auth == "api-key" -%}
import hashlib
{% endif -%}
from typing import Annotated, Any

from fastapi import Depends, Request
{% if cookiecutter.client_auth == "api-key" -%}
from starlette.concurrency import run_in_threadpool
{% endif %}
from app.core.budget import TokenBudget, build_budget
{% if cookiecutter.client_auth == "api-key" -%}
from app.core.client_keys import ClientKeys
{% endif -%}
from app.core.config import Settings, get_settings
from app.core.errors import ApiError
from app.core.openai_client import Upstream
from app.core.rate_limit import RateLimiter, build_rate_limiter
{% if cookiecutter.client_auth == "api-key" -%}
from app.core.secrets import SecretUnavailable
{% endif %}

async def settings() -> Settings:
    """`get_settings()` (cached), served without a threadpool hop."""
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings)]


async def get_upstream(request: Request) -> Upstream:
    upstream: Upstream = request.app.state.upstream
    return upstream


UpstreamDep = Annotated[Upstream, Depends(get_upstream)]


def guard_state(settings: Settings) -> dict[str, Any]:
    """What the client guards keep while the process runs (the lifespan puts it on app.state)."""
    # REDIS_URL: one limit and one budget for all instances (redis is only imported then).
    store = None
    if settings.redis_url is not None:
        from app.core.shared_store import SharedStore

        store = SharedStore(settings)
    return {
        "shared_store": store,
        "rate_limiter": build_rate_limiter(settings, store),
        "budget": build_budget(settings, store),
{%- if cookiecutter.client_auth == "api-key" %}
        "client_keys": ClientKeys(settings),
{%- endif %}
    }


def client_ip(request: Request) -> str:
    """The caller's address as Cloud Run's front end reports it.

    Google's front end appends the address it saw to X-Forwarded-For, so the last entry is the
    one a client cannot forge (behind an external load balancer the client is second to last).
    """
    forwarded = request.headers.get("x-forwarded-for", "")
    if forwarded.strip():
        return forwarded.rsplit(",", 1)[-1].strip()
    return request.client.host if request.client else "unknown"


async def take_token(request: Request, client: str) -> None:
    """One request from `client`; 429 with Retry-After when its bucket is empty."""
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = await limiter.acquire(client)
    if wait > 0:
        retry_after = str(max(1, round(wait + 0.5)))
        raise ApiError(429, "rate_limited", "too many requests", {"Retry-After": retry_after})
{%- if cookiecutter.client_auth == "api-key" %}


def presented_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key", "").strip() or None


async def rate_limited_client(request: Request) -> str:
    """client_auth=api-key: a valid key (401 otherwise), limited per key.

    Failed attempts are charged to the caller's address, so guessing keys is rate limited too.
    """
    key = presented_key(request)
    keys: ClientKeys = request.app.state.client_keys
    try:
        # Loading the keys may read a file or ask Secret Manager: not on the event loop.
        valid = key is not None and await run_in_threadpool(keys.is_valid, key)
    except SecretUnavailable as error:
        raise ApiError(503, "client_keys_unavailable", str(error)) from None
    if key is None or not valid:
        await take_token(request, "ip:" + client_ip(request))
        message = "the API key is not valid" if key else "send Authorization: Bearer <key>"
        raise ApiError(401, "unauthorized", message)
    client = "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    await take_token(request, client)
    return client
{%- else %}


async def rate_limited_client(request: Request) -> str:
    """client_auth={{ cookiecutter.client_auth }}: {{ "Cloud Run IAM has checked the caller" if cookiecutter.client_auth == "iam" else "anyone may call" }}; limited per address."""
    client = "ip:" + client_ip(request)
    await take_token(request, client)
    return client
{%- endif %}


ClientDep = Annotated[str, Depends(rate_limited_client)]


async def get_budget(request: Request) -> TokenBudget:
    budget: TokenBudget = request.app.state.budget
    return budget


BudgetDep = Annotated[TokenBudget, Depends(get_budget)]
