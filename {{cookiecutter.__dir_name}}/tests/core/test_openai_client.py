"""The one upstream client: startup, readiness and key rotation after a 401."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import MakeClient
from tests.fakes.openai_upstream import FakeOpenAI


def rotate_setup(make_client: MakeClient, tmp_path: Path) -> tuple[TestClient, Path]:
    key_file = tmp_path / "openai-key"
    key_file.write_text("sk-old-key-000000\n")
    return make_client(OPENAI_API_KEY=None, OPENAI_API_KEY_FILE=str(key_file)), key_file


def test_a_rotated_key_is_picked_up_after_one_401(
    make_client: MakeClient, auth: dict[str, str], fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    client, key_file = rotate_setup(make_client, tmp_path)
    assert client.post("/v1/chat", json={"message": "hi"}, headers=auth).status_code == 200
    fake_openai.expected_key = "sk-new-key-111111"
    key_file.write_text("sk-new-key-111111\n")  # what a new mounted secret version does
    response = client.post("/v1/chat", json={"message": "hi"}, headers=auth)
    assert response.status_code == 200
    assert fake_openai.authorizations[-2:] == [
        "Bearer sk-old-key-000000",
        "Bearer sk-new-key-111111",
    ]


def test_a_rejected_key_that_did_not_change_fails_after_one_attempt(
    make_client: MakeClient, auth: dict[str, str], fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    client, _ = rotate_setup(make_client, tmp_path)
    fake_openai.expected_key = "sk-someone-else-222"
    response = client.post("/v1/chat", json={"message": "hi"}, headers=auth)
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "upstream rejected the API key"
    assert len(fake_openai.requests) == 1


def test_the_client_is_closed_at_shutdown(make_client: MakeClient, auth: dict[str, str]) -> None:
    client = make_client()
    client.post("/v1/chat", json={"message": "hi"}, headers=auth)
    upstream = client.app.state.upstream  # type: ignore[attr-defined]
    client.__exit__(None, None, None)
    assert upstream._client.is_closed()


def test_the_sdk_never_retries_on_its_own(client: TestClient, auth: dict[str, str]) -> None:
    """Retries happen in the service, within the request's budget, never hidden in the SDK."""
    assert client.post("/v1/chat", json={"message": "hi"}, headers=auth).status_code == 200
    assert client.app.state.upstream._client.max_retries == 0  # type: ignore[attr-defined]
