"""GET /v1/budget: what the calling client, and the service, spent on tokens today (UTC)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import BudgetDep, ClientDep
from app.api.errors import documented_errors

router = APIRouter(prefix="/v1", tags=["budget"])


class Spend(BaseModel):
    spent: int
    reserved: int  # held by calls in flight
    budget: int | None  # None: no budget set
    remaining: int | None


class BudgetReply(BaseModel):
    day: str
    resets_in_seconds: int
    client: Spend
    service: Spend


RESPONSES: dict[int | str, dict[str, Any]] = documented_errors({{ "401, " if cookiecutter.client_auth == "api-key" else "" }}429, 503)


@router.get("/budget", response_model=BudgetReply, responses=RESPONSES)
async def budget(client: ClientDep, budget: BudgetDep) -> BudgetReply:
    report = await budget.report(client)
    return BudgetReply(
        day=report.day,
        resets_in_seconds=report.resets_in_seconds,
        client=Spend(**report.client.as_dict()),
        service=Spend(**report.service.as_dict()),
    )
