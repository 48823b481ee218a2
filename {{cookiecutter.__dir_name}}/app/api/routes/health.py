"""Liveness and readiness. No paths ending in "z": Cloud Run reserves some of them.

https://cloud.google.com/run/docs/known-issues#ah
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.api.deps import UpstreamDep
from app.core.shared_store import degraded_fields

router = APIRouter(tags=["health"])


class NotReady(BaseModel):
    status: str
    reason: str


@router.get("/health")
async def health() -> dict[str, str]:
    """The process serves; checks nothing else, so a slow dependency never restarts it."""
    return {"status": "ok"}


@router.get("/ready", response_model=None, responses={503: {"model": NotReady}})
async def ready(request: Request, upstream: UpstreamDep) -> Any:
    """Ready once the OpenAI key is resolved and the client built; else 503 with the reason.

    With REDIS_URL, `degraded` says whether this instance runs on its fallbacks because Redis
    does not answer: no reason to leave rotation, every instance shares that Redis.
    """
    shared = degraded_fields(request.app.state)
    if upstream.ready:
        return {"status": "ready", **shared}
    body = {"status": "not ready", "reason": upstream.reason, **shared}
    return JSONResponse(body, status_code=503)
