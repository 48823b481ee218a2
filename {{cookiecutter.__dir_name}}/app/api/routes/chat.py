{%- set responses = cookiecutter.openai_api == "responses" -%}
"""POST /v1/chat: a conversation in, one reply as JSON or server-sent events with `"stream": true`.

Speaks OpenAI's {{ "Responses" if responses else "Chat Completions" }} API through `app.core.openai_client`.
The operator's SYSTEM_PROMPT is the instructions; a caller's own `system` is refused unless
ALLOW_CLIENT_SYSTEM_PROMPT=1.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from app.api.deps import BudgetDep, ClientDep, SettingsDep, UpstreamDep
from app.api.errors import documented_errors
from app.api.sse import EventStream
from app.core.config import Settings
from app.core.conversation import Conversation, Outcome
from app.core.errors import ApiError
from app.core.openai_client import AnswerStream
from app.core.usage import Call, call_ended, call_started

router = APIRouter(prefix="/v1", tags=["chat"])


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)


# Either field, the other absent or null.
ONE_CONVERSATION: list[JsonValue] = [
    {
        "required": ["message"],
        "properties": {"message": {"type": "string"}, "messages": {"type": "null"}},
    },
    {
        "required": ["messages"],
        "properties": {"messages": {"type": "array"}, "message": {"type": "null"}},
    },
]


class ChatRequest(BaseModel):
    """Either `message` (one user turn) or `messages` (the conversation so far, ending with the
    user's turn). MAX_TURNS caps the turns, MAX_MESSAGE_CHARS all of their characters."""

    # The schema states "either message or messages" too, so clients and fuzzers know it.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": ONE_CONVERSATION})

    message: str | None = Field(default=None, min_length=1)
    messages: list[Turn] | None = Field(default=None, min_length=1)
    system: str | None = Field(default=None, description="refused unless the service allows it")
{%- if responses %}
    previous_response_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="continue the conversation stored with this reply's response_id",
    )
{%- endif %}
    # Strict, as the schema says: "stream": 0 or "no" is a 422, not a guess.
    stream: bool = Field(default=False, strict=True)
    max_tokens: int | None = Field(default=None, ge=1, description="at most OPENAI_MAX_TOKENS")

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(cls.model_fields))):
            named = ", ".join(str(name)[:40] for name in unknown[:3])
            raise ValueError(f"unknown field {named}; allowed: {', '.join(cls.model_fields)}")
        return data

    @model_validator(mode="after")
    def _one_conversation(self) -> ChatRequest:
        if (self.message is None) == (self.messages is None):
            raise ValueError("send either message or messages")
        if self.messages is not None and self.messages[-1].role != "user":
            raise ValueError("messages must end with a user turn")
        return self


class TokenUsage(BaseModel):
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None


class ChatReply(BaseModel):
    reply: str
    model: str
{%- if responses %}
    # The response's status (completed), or why it is incomplete (max_output_tokens).
{%- else %}
    # stop, or why the answer stopped early (length: the token cap was reached).
{%- endif %}
    finish_reason: str | None
    usage: TokenUsage | None
{%- if responses %}
    response_id: str | None = Field(description="send as previous_response_id to continue")
{%- endif %}


# Besides the JSON reply: the event stream, and every error status of the HTTP contract.
SSE_EVENT = {  # one server-sent event, as OpenAPI 3.2 describes text/event-stream items
    "type": "object",
    "properties": {
        "data": {
            "type": "string",
            "description": '{"delta": text} per piece, then {"done": {"finish_reason", "usage"'
            {% if responses %}', "response_id"}} and [DONE]; '{% else %}"}} and [DONE]; "{% endif %}
            'or {"error": {"code", "message"}} (never followed by [DONE]) when the answer failed',
        }
    },
    "required": ["data"],
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}},
    **documented_errors({{ "401, " if cookiecutter.client_auth == "api-key" else "" }}403, {{ "404, " if responses else "" }}413, 422, 429, 502, 503, 504),
}


@router.post("/chat", response_model=ChatReply, responses=RESPONSES)
async def chat(
    body: ChatRequest,
    client: ClientDep,
    settings: SettingsDep,
    upstream: UpstreamDep,
    budget: BudgetDep,
) -> Any:
    conversation = _conversation(body, settings)
    turns = conversation.turns
    chars = sum(len(turn["content"]) for turn in turns) + len(conversation.instructions)
    call = await call_started(
        client,
        settings.openai_model,
        conversation.max_tokens,
        chars,
        stream=body.stream,
        budget=budget,
    )
    try:
        if body.stream:
            stream = await upstream.stream(conversation)
            return EventStream(_events(stream, call), settings.sse_keepalive_seconds)
        outcome = await upstream.reply(conversation)
    except ApiError as error:
        await call_ended(call, None, None, error=error.code)
        raise
    await call_ended(call, outcome.usage, outcome.finish_reason)
    return ChatReply(
        reply=outcome.text,
        model=outcome.model,
        finish_reason=outcome.finish_reason,
        usage=_usage(outcome),
{%- if responses %}
        response_id=outcome.response_id,
{%- endif %}
    )


def _conversation(body: ChatRequest, settings: Settings) -> Conversation:
    """The request as the adapter's input, with the service's rules applied (403s and 422s)."""
    if body.system is not None and not settings.allow_client_system_prompt:
        raise ApiError(403, "system_not_allowed", "this service sets the system prompt itself")
{%- if responses %}
    if body.previous_response_id and not settings.openai_store:
        message = "this service does not store conversations: send the history in messages"
        raise ApiError(403, "conversation_not_stored", message)
{%- endif %}
    if body.messages is not None:
        turns = [{"role": turn.role, "content": turn.content} for turn in body.messages]
    else:
        turns = [{"role": "user", "content": body.message or ""}]
    if len(turns) > settings.max_turns:
        message = f"the conversation has {len(turns)} turns; at most {settings.max_turns}"
        raise ApiError(422, "too_many_turns", message)
    chars = sum(len(turn["content"]) for turn in turns) + len(body.system or "")
    if chars > settings.max_message_chars:
        message = f"the conversation is longer than {settings.max_message_chars} characters"
        raise ApiError(422, "message_too_long", message)
    cap = settings.openai_max_tokens
    return Conversation(
        turns=turns,
        instructions=(body.system if body.system is not None else settings.system_prompt).strip(),
        max_tokens=min(body.max_tokens or cap, cap),
{%- if responses %}
        previous_response_id=body.previous_response_id,
{%- endif %}
    )


def _usage(outcome: Outcome) -> TokenUsage | None:
    return TokenUsage(**outcome.usage) if outcome.usage is not None else None


def _summary(outcome: Outcome | None) -> dict[str, Any]:
    """The `done` event: how the answer finished (`deltas()` sets the outcome before it ends)."""
    if outcome is None:
        return {"finish_reason": None, "usage": None}
    summary: dict[str, Any] = {"finish_reason": outcome.finish_reason, "usage": outcome.usage}
{%- if responses %}
    summary["response_id"] = outcome.response_id
{%- endif %}
    return summary


def _event(data: object) -> str:
    return f"data: {json.dumps(data)}\n\n"


async def _events(stream: AnswerStream, call: Call) -> AsyncIterator[str]:
    """Deltas as SSE, then the summary and [DONE]; a failure is an in-band error event instead.

    Closing the upstream stream in `finally` means a client that disconnects (Starlette cancels
    this generator) stops the tokens being generated and paid for.
    """
    seen = {"events": 0, "chars": 0}
    deltas = stream.deltas()
    error: str | None = None
    try:
        async for delta in deltas:
            seen["events"] += 1
            seen["chars"] += len(delta)
            yield _event({"delta": delta})
        yield _event({"done": _summary(stream.outcome)})
        yield "data: [DONE]\n\n"
    except ApiError as failure:
        error = failure.code
        yield _event({"error": {"code": failure.code, "message": failure.message}})
    finally:
        await deltas.aclose()
        await stream.close()
        finish = stream.outcome.finish_reason if stream.outcome else None
        aborted = stream.outcome is None
        await call_ended(call, stream.usage, finish, error=error, aborted=aborted, seen=seen)
