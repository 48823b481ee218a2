"""What the streaming references share: the request body, and the settings they read."""

import os

from pydantic import BaseModel


class Chat(BaseModel):
    message: str
    stream: bool = False


def configure(state: object) -> None:
    """The model, and the API the service variant under test speaks (BENCH_OPENAI_API)."""
    state.model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")  # type: ignore[attr-defined]
    api = os.environ.get("BENCH_OPENAI_API", "responses")
    state.responses = api == "responses"  # type: ignore[attr-defined]
