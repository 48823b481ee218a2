"""client_auth=api-key: /v1/* needs a valid client key; /health and /ready stay open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import CLIENT_KEY, MakeClient
from tests.fakes.openai_upstream import FakeOpenAI


def chat(client: TestClient, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    response = client.post("/v1/chat", json={"message": "hi"}, headers=headers)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {CLIENT_KEY}"}, {"X-API-Key": CLIENT_KEY}],
    ids=["bearer", "x-api-key"],
)
def test_a_valid_key_is_accepted(client: TestClient, headers: dict[str, str]) -> None:
    assert chat(client, headers)[0] == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": CLIENT_KEY}],
    ids=["missing", "wrong-x-api-key", "wrong-bearer", "no-bearer-scheme"],
)
def test_missing_or_wrong_keys_get_401_json(
    client: TestClient, fake_openai: FakeOpenAI, headers: dict[str, str]
) -> None:
    status, body = chat(client, headers)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"  # type: ignore[index]
    assert fake_openai.requests == []


def test_a_revoked_key_stops_working_without_a_restart(
    make_client: MakeClient, tmp_path: Path
) -> None:
    file = tmp_path / "keys"
    file.write_text("revoked-key\nother-key\n")
    client = make_client(CLIENT_API_KEYS=None, CLIENT_API_KEYS_FILE=str(file))
    assert chat(client, {"X-API-Key": "revoked-key"})[0] == 200
    file.write_text("other-key\n")
    assert chat(client, {"X-API-Key": "revoked-key"})[0] == 401
    assert chat(client, {"X-API-Key": "other-key"})[0] == 200


def test_health_and_ready_need_no_key(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    client.post("/v1/chat", json={"message": "hi"}, headers={"X-API-Key": CLIENT_KEY})
    assert client.get("/ready").status_code == 200


def test_no_configured_keys_answers_503_not_open(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client(CLIENT_API_KEYS=None, CLIENT_API_KEYS_FILE=str(tmp_path / "none"))
    status, body = chat(client, {"X-API-Key": "anything"})
    assert status == 503
    assert body["error"]["code"] == "client_keys_unavailable"  # type: ignore[index]


def test_guessing_keys_is_rate_limited(make_client: MakeClient) -> None:
    client = make_client(RATE_LIMIT_PER_MINUTE="2")
    statuses = [chat(client, {"X-API-Key": f"guess-{n}"})[0] for n in range(3)]
    assert statuses == [401, 401, 429]


def test_client_keys_never_reach_the_log(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    chat(client, {"X-API-Key": CLIENT_KEY})
    chat(client, {"X-API-Key": "wrong"})
    out = capsys.readouterr().out
    assert out
    assert CLIENT_KEY not in out
    for line in out.splitlines():
        json.loads(line)
