"""OpenAI's Responses API (`POST /v1/responses`): the request it takes, the events it sends.

https://platform.openai.com/docs/api-reference/responses: the stream is typed events
(`response.output_text.delta`, then `response.completed`, `response.incomplete` or
`response.failed`, or an `error` event) and has no `[DONE]` line.
"""

from __future__ import annotations

from typing import Any

from app.core.config import Settings
from app.core.conversation import (
    Conversation,
    Outcome,
    Usage,
    cut_short,
    stopped_early,
    upstream_failed,
    usage_of,
)

# Posted to, under the client's base URL.
PATH = "/responses"
NAME = "responses"


def params(conversation: Conversation, settings: Settings, stream: bool) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": settings.openai_model,
        "input": conversation.turns,
        "max_output_tokens": conversation.max_tokens,
        "store": settings.openai_store,
    }
    if conversation.instructions:
        request["instructions"] = conversation.instructions
    if conversation.previous_response_id:
        request["previous_response_id"] = conversation.previous_response_id
    if stream:
        request["stream"] = True
    return request


def _usage(response: dict[str, Any]) -> Usage | None:
    return usage_of(response.get("usage"), "input_tokens", "output_tokens", "output_tokens_details")


def _text(response: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "")
        for item in response.get("output") or []
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    )


def outcome(response: Any) -> Outcome:
    """A whole (non-streamed) response; `incomplete` stays a reply with its reason, visible."""
    if response.get("status") == "failed":
        raise upstream_failed(response.get("error"))
    status = response["status"]
    reason = (response.get("incomplete_details") or {}).get("reason") or status
    finish = reason if status == "incomplete" else status
    model = str(response.get("model") or "")
    return Outcome(_text(response), model, finish, _usage(response), response.get("id"))


class StreamReader:
    """Reads one streamed response's events; `finish()` then says how it ended."""

    def __init__(self) -> None:
        self.done = False
        self.usage: Usage | None = None
        self.model = ""
        self._final: dict[str, Any] | None = None

    def read(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            delta = event.get("delta")
            return delta if isinstance(delta, str) else None
        if kind == "error":
            raise upstream_failed(event)
        if kind in {"response.completed", "response.incomplete", "response.failed"}:
            self._final = event["response"]
            self.usage = _usage(self._final)
            self.model = str(self._final.get("model") or "")
            self.done = True
        return None

    def finish(self) -> Outcome:
        if self._final is None:
            raise cut_short()
        if self._final.get("status") == "incomplete":
            raise stopped_early((self._final.get("incomplete_details") or {}).get("reason"))
        summary = outcome(self._final)  # raises for a failed response
        summary.text = ""
        return summary
