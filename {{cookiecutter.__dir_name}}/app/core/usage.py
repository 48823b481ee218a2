"""Where an upstream call starts and where it ends: the usage line, and the place for budgets.

`call_started` knows who asks and for how much (the output-token cap, the input's size) before
anything is sent; `call_ended` knows what the upstream reported, or None, and whether a stream
was aborted. A token budget reserves in the first and settles in the second.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

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


async def call_started(
    client: str | None, model: str, max_tokens: int, input_chars: int, *, stream: bool
) -> Call:
    return Call(client, model, max_tokens, input_chars, stream)


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
    logger.info("chat completion", extra={"fields": fields})
