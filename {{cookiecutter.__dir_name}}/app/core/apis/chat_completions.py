"""OpenAI's Chat Completions API (`POST /v1/chat/completions`): the request and its chunks.

Also what most OpenAI-compatible servers speak (vLLM, Ollama, gateways). The stream is chunks
with `choices[].delta`, a chunk with `finish_reason`, a last chunk with `usage` (asked for with
`stream_options.include_usage`), then `[DONE]`.
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
PATH = "/chat/completions"
NAME = "chat-completions"
# Finish reasons of a whole answer; any other (length, content_filter) stopped it early.
WHOLE = {"stop", "tool_calls", "function_call"}


def params(conversation: Conversation, settings: Settings, stream: bool) -> dict[str, Any]:
    system = [{"role": "system", "content": conversation.instructions}]
    request: dict[str, Any] = {
        "model": settings.openai_model,
        "messages": (system if conversation.instructions else []) + conversation.turns,
        # max_tokens is deprecated and refused by reasoning models.
        "max_completion_tokens": conversation.max_tokens,
    }
    if stream:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


def _usage(body: dict[str, Any]) -> Usage | None:
    return usage_of(
        body.get("usage"), "prompt_tokens", "completion_tokens", "completion_tokens_details"
    )


def outcome(completion: Any) -> Outcome:
    """A whole (non-streamed) completion; a `length` finish stays a reply, visible."""
    if "error" in completion:  # some compatible servers answer 200 with an error body
        raise upstream_failed(completion["error"])
    choice = completion["choices"][0]
    text = choice["message"].get("content") or ""
    model = str(completion.get("model") or "")
    return Outcome(text, model, choice.get("finish_reason"), _usage(completion))


class StreamReader:
    """Reads one stream's chunks; `finish()` then says how it ended."""

    done = False  # the stream ends with [DONE] (or the connection's end), never before

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.model = ""
        self._finish_reason: str | None = None

    def read(self, chunk: dict[str, Any]) -> str | None:
        if "error" in chunk:
            raise upstream_failed(chunk["error"])
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.usage = _usage(chunk)
        text = None
        for choice in chunk.get("choices") or ():
            self._finish_reason = choice.get("finish_reason") or self._finish_reason
            content = (choice.get("delta") or {}).get("content")
            if content:
                text = content if text is None else text + content
        return text

    def finish(self) -> Outcome:
        if self._finish_reason is None:
            raise cut_short()
        if self._finish_reason not in WHOLE:
            raise stopped_early(self._finish_reason)
        return Outcome("", self.model, self._finish_reason, self.usage)
