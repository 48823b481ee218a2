"""Liveness and readiness. No paths ending in "z": Cloud Run reserves some of them.

https://cloud.google.com/run/docs/known-issues#ah
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.api.deps import UpstreamDep

router = APIRouter(tags=["health"])


class NotReady(BaseModel):
    status: str
    reason: str


@router.get("/health")
async def health() -> dict[str, str]:
    """The process serves; checks nothing else, so a slow dependency never restarts it."""
    return {"status": "ok"}


@router.get("/ready", response_model=None, responses={503: {"model": NotReady}})
async def ready(upstream: UpstreamDep) -> Any:
    """Ready once the OpenAI key is resolved and the client built; else 503 with the reason."""
    if upstream.ready:
        return {"status": "ready"}
    return JSONResponse({"status": "not ready", "reason": upstream.reason}, status_code=503)
