"""The one upstream client: startup, readiness and key rotation after a 401."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.core.config import Settings
from tests.conftest import Env, MakeClient
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


def test_a_rejected_mounted_key_is_an_error_line_naming_the_file(
    make_client: MakeClient,
    auth: dict[str, str],
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, key_file = rotate_setup(make_client, tmp_path)
    fake_openai.expected_key = "sk-someone-else-222"
    client.post("/v1/chat", json={"message": "hi"}, headers=auth)
    errors = [line for line in capsys.readouterr().out.splitlines() if '"ERROR"' in line]
    assert len(errors) == 1
    assert f"new version of the secret mounted at {key_file}" in errors[0]
    assert "sk-old-key-000000" not in errors[0]


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


@pytest.mark.parametrize(
    ("name", "value"),
    [("REQUEST_TIMEOUT_SECONDS", "5"), ("REQUEST_TIMEOUT_SECONDS", "3601"),
     ("SSE_KEEPALIVE_SECONDS", "16"), ("SSE_KEEPALIVE_SECONDS", "0"), ("MAX_TURNS", "0")],
)  # fmt: skip
def test_time_and_conversation_limits_outside_their_bounds_are_refused(
    env: Env, name: str, value: str
) -> None:
    """A stream must end before Cloud Run's cut (5 s margin), and proxies need a comment within
    15 s: values that break either are a startup error, not a silent misbehaviour."""
    env(**{name: value})
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()
