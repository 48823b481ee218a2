"""POST /v1/chat: one reply as JSON, or server-sent events with `"stream": true`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from app.api.deps import BudgetDep, ClientDep, SettingsDep, UpstreamDep
from app.api.errors import documented_errors
from app.core.budget import Reservation, TokenBudget, call_tokens, usage_fields
from app.core.errors import ApiError
from app.core.openai_client import log_usage, upstream_error

if TYPE_CHECKING:
    from openai import AsyncStream
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
    from openai.types.completion_usage import CompletionUsage

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["chat"])


class ChatRequest(BaseModel):
    message: str = Field(min_length=1)
    system: str | None = None
    # Strict, as the schema says: "stream": 0 or "no" is a 422, not a guess.
    stream: bool = Field(default=False, strict=True)
    max_tokens: int | None = Field(default=None, ge=1, description="at most OPENAI_MAX_TOKENS")


class ChatReply(BaseModel):
    reply: str
    model: str


# Besides the JSON reply: the event stream, and every error status of the HTTP contract.
SSE_EVENT = {  # one server-sent event, as OpenAPI 3.2 describes text/event-stream items
    "type": "object",
    "properties": {"data": {"type": "string", "description": '{"delta": ...}, then [DONE]'}},
    "required": ["data"],
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}},
    **documented_errors({{ "401, " if cookiecutter.client_auth == "api-key" else "" }}413, 422, 429, 502, 503, 504),
}


@router.post("/chat", response_model=ChatReply, responses=RESPONSES)
async def chat(
    body: ChatRequest,
    client: ClientDep,
    settings: SettingsDep,
    upstream: UpstreamDep,
    budget: BudgetDep,
) -> Any:
    messages = _messages(body, settings.max_message_chars)
    max_tokens = min(body.max_tokens or settings.openai_max_tokens, settings.openai_max_tokens)
    # Token budget: hold the call's most before it starts; every way out settles it.
    input_chars = len(body.message) + len(body.system or "")
    reservation = await budget.reserve(client, call_tokens(max_tokens, input_chars))
    started = time.perf_counter()
    try:
        if body.stream:
            stream = await upstream.stream(messages, max_tokens)
        else:
            completion = await upstream.complete(messages, max_tokens)
    except BaseException as error:
        await budget.settle(reservation, _failed_call_tokens(error))
        raise
    if body.stream:
        charge = StreamCharge(budget, reservation, input_chars)
        return StreamingResponse(_events(stream, started, charge), media_type="text/event-stream")
    used = completion.usage.total_tokens if completion.usage else None
    report = await budget.settle(reservation, used)
    log_usage(completion.model, completion.usage, started, usage_fields(reservation, used, report))
    return ChatReply(reply=completion.choices[0].message.content or "", model=completion.model)


def _failed_call_tokens(error: BaseException) -> int | None:
    """A call that failed: OpenAI bills no error answer (0); after a timeout or a cancel the
    model may have run, so the reservation stands (None)."""
    if isinstance(error, ApiError) and error.status != 504:
        return 0
    return None


@dataclass
class StreamCharge:
    """What a stream settles when it ends: the reported usage, else what was seen of it."""

    budget: TokenBudget
    reservation: Reservation
    input_chars: int
    deltas: int = 0

    def used(self, usage: CompletionUsage | None) -> int | None:
        """Usage when it came; else the input estimate plus a token per delta seen; else None
        (nothing seen: the reservation stands)."""
        if usage is not None:
            return usage.total_tokens
        return call_tokens(self.deltas, self.input_chars) if self.deltas else None


def _messages(body: ChatRequest, max_chars: int) -> list[ChatCompletionMessageParam]:
    for name, text in (("message", body.message), ("system", body.system or "")):
        if len(text) > max_chars:
            raise ApiError(422, "message_too_long", f"{name} is longer than {max_chars} characters")
    messages: list[ChatCompletionMessageParam] = []
    if body.system:
        messages.append({"role": "system", "content": body.system})
    messages.append({"role": "user", "content": body.message})
    return messages


def _event(data: object) -> str:
    return f"data: {json.dumps(data)}\n\n"


async def _events(
    stream: AsyncStream[ChatCompletionChunk], started: float, charge: StreamCharge
) -> AsyncIterator[str]:
    """Deltas as SSE, then [DONE]. Closing the upstream stream in `finally` means a client that
    disconnects (Starlette cancels this generator) stops the tokens being generated and paid for.
    """
    usage: CompletionUsage | None = None
    model = ""
    chunks = 0
    try:
        async for chunk in stream:
            chunks += 1
            model, usage = chunk.model, chunk.usage or usage
            for choice in chunk.choices:
                if choice.delta.content:
                    charge.deltas += 1
                    yield _event({"delta": choice.delta.content})
        if not chunks:  # a 200 that was no event stream (e.g. a proxy's page): not an empty reply
            raise ValueError("the upstream stream carried no events")
        yield "data: [DONE]\n\n"
    except Exception as error:  # noqa: BLE001 - the status is sent; report in-band and end
        logger.warning("upstream stream failed: %s", type(error).__name__)
        failure = upstream_error(error)
        yield _event({"error": {"code": failure.code, "message": failure.message}})
    finally:
        await stream.close()
        used = charge.used(usage)
        report = await charge.budget.settle(charge.reservation, used)
        log_usage(model, usage, started, usage_fields(charge.reservation, used, report))
