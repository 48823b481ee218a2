"""The Responses API's own parts: input and instructions, stored conversations, the cap's name."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.routes.chat_calls import DEFAULT_SYSTEM_PROMPT, THREE_TURNS, chat, events
from tests.conftest import MakeClient
from tests.fakes.openai_upstream import FakeOpenAI


def test_sends_turns_as_input_and_the_system_prompt_as_instructions(
    client: TestClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    chat(client, auth, messages=THREE_TURNS, max_tokens=7)
    sent = fake_openai.requests[0]
    assert sent["input"] == THREE_TURNS
    assert sent["instructions"] == DEFAULT_SYSTEM_PROMPT
    assert sent["max_output_tokens"] == 7
    assert sent["store"] is True
    assert "messages" not in sent
    assert "max_tokens" not in sent


def test_an_empty_system_prompt_sends_no_instructions(
    make_client: MakeClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client = make_client(SYSTEM_PROMPT="")
    # An empty variable counts as unset: the default prompt stays. A blank one sends none.
    chat(client, auth, message="hi")
    assert fake_openai.requests[0]["instructions"]
    client = make_client(SYSTEM_PROMPT=" ")
    chat(client, auth, message="hi")
    assert "instructions" not in fake_openai.requests[1]


def test_previous_response_id_continues_a_stored_conversation(
    client: TestClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    first = chat(client, auth, message="My name is Ada.").json()
    assert first["response_id"].startswith("resp_")
    second = chat(
        client, auth, message="What is my name?", previous_response_id=first["response_id"]
    )
    assert second.status_code == 200
    assert fake_openai.requests[1]["previous_response_id"] == first["response_id"]
    assert fake_openai.requests[1]["input"] == [{"role": "user", "content": "What is my name?"}]
    assert second.json()["response_id"] != first["response_id"]


def test_the_streamed_summary_carries_the_response_id(
    client: TestClient, auth: dict[str, str]
) -> None:
    received = events(chat(client, auth, message="hi", stream=True))
    done = received[-2]["done"]
    assert done["response_id"].startswith("resp_")
    follow_up = chat(client, auth, message="again", previous_response_id=done["response_id"])
    assert follow_up.status_code == 200


def test_an_unknown_previous_response_id_is_a_404(client: TestClient, auth: dict[str, str]) -> None:
    response = chat(client, auth, message="hi", previous_response_id="resp_never_made")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_response_id"


def test_openai_store_off_stores_nothing_and_refuses_previous_response_id(
    make_client: MakeClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client = make_client(OPENAI_STORE="0")
    assert chat(client, auth, message="hi").status_code == 200
    assert fake_openai.requests[0]["store"] is False
    response = chat(client, auth, message="hi", previous_response_id="resp_fake_1")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "conversation_not_stored"
    assert len(fake_openai.requests) == 1
