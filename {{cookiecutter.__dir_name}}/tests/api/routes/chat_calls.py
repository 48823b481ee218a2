"""Calling POST /v1/chat in tests, and what this service's OpenAI API calls things."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi.testclient import TestClient

from app.core.config import Settings

OPENAI_API = {{ cookiecutter.openai_api | tojson }}
RESPONSES = OPENAI_API == "responses"
# finish_reason of a whole answer, and of one stopped by the token cap, on this API.
WHOLE = "completed" if RESPONSES else "stop"
CAPPED = "max_output_tokens" if RESPONSES else "length"
CAP_PARAMETER = "max_output_tokens" if RESPONSES else "max_completion_tokens"
DIALECT = "Responses" if RESPONSES else "ChatCompletions"  # tests/fakes/openai_upstream.py
DEFAULT_SYSTEM_PROMPT = Settings.model_fields["system_prompt"].default
THREE_TURNS = [
    {"role": "user", "content": "My name is Ada."},
    {"role": "assistant", "content": "Hello Ada."},
    {"role": "user", "content": "What is my name?"},
]


def chat(client: TestClient, auth: dict[str, str], **body: object) -> httpx.Response:
    return client.post("/v1/chat", json=body, headers=auth)


def events(response: httpx.Response) -> list[Any]:
    """The `data:` payloads of an event stream, JSON-decoded, with `[DONE]` as the string."""
    payloads = [
        line.removeprefix("data: ")
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    return [payload if payload == "[DONE]" else json.loads(payload) for payload in payloads]


def text_of(received: list[Any]) -> str:
    return "".join(
        event["delta"] for event in received if isinstance(event, dict) and "delta" in event
    )
