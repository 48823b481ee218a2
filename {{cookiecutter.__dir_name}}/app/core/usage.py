"""Where an upstream call starts and where it ends: the usage line, and the place for budgets.

`call_started` knows who asks and for how much (the output-token cap, the input's size) before
anything is sent; `call_ended` knows what the upstream reported, or None, and whether a stream
was aborted. The token budget (app/core/budget.py) reserves in the first and settles in the
second.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from app.core.budget import Reservation, TokenBudget, call_tokens, usage_fields
from app.core.conversation import Usage

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Call:
    client: str | None
    model: str
    max_tokens: int
    input_chars: int
    stream: bool
    started: float = field(default_factory=time.perf_counter)
    budget: TokenBudget | None = None
    reservation: Reservation | None = None


async def call_started(
    client: str | None,
    model: str,
    max_tokens: int,
    input_chars: int,
    *,
    stream: bool,
    budget: TokenBudget | None = None,
) -> Call:
    """With a budget, hold the call's most first (429 budget_exhausted, 503 budget_unavailable)."""
    call = Call(client, model, max_tokens, input_chars, stream, budget=budget)
    if budget is not None and client is not None:
        call.reservation = await budget.reserve(client, call_tokens(max_tokens, input_chars))
    return call


def charged_tokens(
    call: Call, usage: Usage | None, error: str | None, seen: dict[str, int] | None
) -> int | None:
    """What a call is charged: the usage reported; else, for a stream, the input estimate plus
    what was seen of the output; else 0 for an error answer (OpenAI bills none) and None (the
    reservation stands) after a timeout, when the model may have run."""
    if usage and usage.get("input_tokens") is not None and usage.get("output_tokens") is not None:
        return usage["input_tokens"] + usage["output_tokens"]
    if seen and seen.get("events"):
        output = max(seen["events"], math.ceil(seen.get("chars", 0) / 4))
        return call_tokens(output, call.input_chars)
    if error is not None and error != "upstream_timeout":
        return 0
    return None


async def call_ended(
    call: Call,
    usage: Usage | None,
    finish_reason: str | None,
    *,
    error: str | None = None,
    aborted: bool = False,
    seen: dict[str, int] | None = None,
) -> None:
    """One line per chat request, so cost can be summed per client in Cloud Logging."""
    fields: dict[str, object] = {
        "client": call.client,
        "model": call.model,
        "stream": call.stream,
        "finish_reason": finish_reason,
        "input_tokens": usage.get("input_tokens") if usage else None,
        "output_tokens": usage.get("output_tokens") if usage else None,
        "reasoning_tokens": usage.get("reasoning_tokens") if usage else None,
        "upstream_latency_ms": round((time.perf_counter() - call.started) * 1000, 1),
    }
    if error:
        fields["error"] = error
    if call.stream:
        fields["aborted"] = aborted
        fields["seen"] = seen or {}
    if call.budget is not None and call.reservation is not None:
        used = charged_tokens(call, usage, error, seen)
        report = await call.budget.settle(call.reservation, used)
        fields |= usage_fields(call.reservation, used, report)
    logger.info("chat completion", extra={"fields": fields})
