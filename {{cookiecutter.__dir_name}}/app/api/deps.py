"""Dependencies shared by the routes, as `Annotated` aliases.

They are `async def` unless they block: FastAPI runs a plain `def` dependency in its threadpool,
a thread hop on every request that uses it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.core.budget import TokenBudget
from app.core.config import Settings, get_settings
from app.core.openai_client import Upstream


async def settings() -> Settings:
    """`get_settings()` (cached), served without a threadpool hop."""
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings)]


async def get_upstream(request: Request) -> Upstream:
    upstream: Upstream = request.app.state.upstream
    return upstream


UpstreamDep = Annotated[Upstream, Depends(get_upstream)]


async def current_client(request: Request) -> str:
    """The client id that the guard (app/api/guard.py) settled on for this /v1 request,
    {{ '"key:<hash prefix>" per API key' if cookiecutter.client_auth == "api-key" else ('"user:<email>" per IAM caller, else "ip:<address>"' if cookiecutter.client_auth == "iam" else '"ip:<address>" per caller') }}.

    The guard has already checked and counted the request: asking for this is optional.
    """
    client: str | None = getattr(request.state, "client", None)
    if client is None:  # a route outside /v1: nothing guards it, so there is no client
        raise RuntimeError(f"ClientDep is only available under /v1, not on {request.url.path}")
    return client


ClientDep = Annotated[str, Depends(current_client)]


async def get_budget(request: Request) -> TokenBudget:
    budget: TokenBudget = request.app.state.budget
    return budget


BudgetDep = Annotated[TokenBudget, Depends(get_budget)]
