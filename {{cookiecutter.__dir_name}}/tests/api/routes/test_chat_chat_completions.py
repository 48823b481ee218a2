"""The Chat Completions API's own parts: messages with a system turn, the cap's name, usage."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.routes.chat_calls import DEFAULT_SYSTEM_PROMPT, THREE_TURNS, chat
from tests.fakes.openai_upstream import FakeOpenAI


def test_sends_the_system_prompt_as_the_first_message(
    client: TestClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    chat(client, auth, messages=THREE_TURNS, max_tokens=7)
    sent = fake_openai.requests[0]
    system = {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    assert sent["messages"] == [system, *THREE_TURNS]
    # max_tokens is deprecated and refused by reasoning models.
    assert sent["max_completion_tokens"] == 7
    assert "max_tokens" not in sent


def test_a_stream_asks_for_its_usage(
    client: TestClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    chat(client, auth, message="hi", stream=True)
    assert fake_openai.requests[0]["stream_options"] == {"include_usage": True}


def test_previous_response_id_is_not_part_of_this_api(
    client: TestClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    response = chat(client, auth, message="hi", previous_response_id="resp_1")
    assert response.status_code == 422
    assert "previous_response_id" in response.json()["error"]["message"]
    assert fake_openai.requests == []
