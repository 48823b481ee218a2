"""What the chat flow hands an API adapter and what it gets back, whichever OpenAI API it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# input/output tokens, and reasoning tokens where the upstream reports them.
Usage = dict[str, int]


@dataclass(frozen=True, slots=True)
class Conversation:
    turns: list[dict[str, str]]  # {"role": "user" | "assistant", "content": ...}, oldest first
    instructions: str  # the system prompt; "" sends none
    max_tokens: int
    previous_response_id: str | None = None


@dataclass(slots=True)
class Outcome:
    """A finished answer: the whole reply, or a stream's summary (text left empty)."""

    text: str
    model: str
    finish_reason: str | None
    usage: Usage | None
    response_id: str | None = None


def usage_of(counts: Any, input_name: str, output_name: str, details_name: str) -> Usage | None:
    """The upstream's usage object in the service's names, or None when there is none."""
    if not isinstance(counts, dict):
        return None
    usage = {"input_tokens": counts.get(input_name), "output_tokens": counts.get(output_name)}
    details = counts.get(details_name)
    if isinstance(details, dict) and details.get("reasoning_tokens") is not None:
        usage["reasoning_tokens"] = details["reasoning_tokens"]
    return {name: int(value) for name, value in usage.items() if value is not None}


# Why an answer stopped before it was whole -> the code the caller reads (same on both APIs).
ENDED_EARLY_CODES = {
    "length": "output_limit_reached",  # Chat Completions' finish_reason
    "max_output_tokens": "output_limit_reached",  # Responses' incomplete_details.reason
    "content_filter": "content_filtered",
}


class EndedEarly(Exception):
    """The upstream answered 200 but not with a whole answer: incomplete, failed or cut.

    `detail` is what the operator's log line shows (the upstream's own error type and code).
    """

    def __init__(self, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or {}


def stopped_early(reason: str | None) -> EndedEarly:
    code = ENDED_EARLY_CODES.get(reason or "", "upstream_incomplete")
    return EndedEarly(code, f"the answer stopped early ({reason})", {"reason": reason})


def upstream_failed(error: Any) -> EndedEarly:
    """An error the upstream reported inside its 200 (an `error` event, a failed response)."""
    detail = error if isinstance(error, dict) else {}
    reported = {"type": detail.get("type"), "code": detail.get("code")}
    return EndedEarly("upstream_error", "the model's API reported an error", reported)


def cut_short() -> EndedEarly:
    return EndedEarly("upstream_incomplete", "the answer ended before it was complete")
