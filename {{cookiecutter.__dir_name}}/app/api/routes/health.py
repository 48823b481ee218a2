"""Liveness and readiness. No paths ending in "z": Cloud Run reserves some of them.

https://cloud.google.com/run/docs/known-issues#ah
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.api.deps import UpstreamDep
from app.api.errors import SHOW_NOT_READY_DETAIL
{%- if cookiecutter.client_auth == "api-key" %}
from app.core.client_keys import ClientKeys
from app.core.secrets import SecretUnavailable
{%- endif %}
from app.core.shared_store import degraded_fields


class NotReady(BaseModel):
    status: str
    code: str
    reason: str | None = Field(default=None, description="client_auth=iam only: the cause and fix")


def add_probes(app: FastAPI) -> None:
    """Straight onto the app, not through an APIRouter: FastAPI keeps an included router as one
    more routing layer that every request to it passes (about 5 µs, a twentieth of what a
    /health request costs), and these are the paths Cloud Run and load balancers probe."""
    app.add_api_route("/health", health, methods=["GET"], tags=["health"])
    app.add_api_route(
        "/ready",
        ready,
        methods=["GET"],
        tags=["health"],
        response_model=None,
        responses={503: {"model": NotReady}},
    )


async def health() -> dict[str, str]:
    """The process serves; checks nothing else, so a slow dependency never restarts it."""
    return {"status": "ok"}


async def ready(request: Request, upstream: UpstreamDep) -> Any:
    """Ready once everything this mode needs is loaded: the OpenAI key{{ " and the client API keys" if cookiecutter.client_auth == "api-key" else "" }}.
    Else 503 with a short code; the log line written when loading failed has the reason.
    With REDIS_URL, `degraded` says whether Redis does not answer and this instance runs on its
    fallbacks: no reason to leave rotation, every instance shares that Redis."""
    if not upstream.ready:
        # Upstream.reason is "starting" until the first attempt to resolve the key has ended.
        code = "starting" if upstream.reason == "starting" else "openai_key_unavailable"
        return not_ready(code, upstream.reason)
{%- if cookiecutter.client_auth == "api-key" %}
    keys: ClientKeys = request.app.state.client_keys
    try:
        await keys.current()  # read again first when they are due
    except SecretUnavailable:
        return not_ready("client_keys_unavailable", keys.reason)
{%- endif %}
    return {"status": "ready", **degraded_fields(request.app.state)}


def not_ready(code: str, reason: str) -> JSONResponse:
    body = {"status": "not ready", "code": code}
    if SHOW_NOT_READY_DETAIL:  # the same rule as for the 503 errors (app/api/errors.py)
        body["reason"] = reason
    return JSONResponse(body, status_code=503)
