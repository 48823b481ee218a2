"""client_auth=api-key: /v1/* needs a valid client key; /health and /ready stay open."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.core.client_keys import key_id
from app.main import create_app
from tests.conftest import CLIENT_KEY, Env, MakeClient
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import serve_in_thread


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


def test_a_missing_key_names_both_accepted_headers(client: TestClient) -> None:
    message = chat(client, {})[1]["error"]["message"]  # type: ignore[index]
    assert "Authorization: Bearer" in message
    assert "X-API-Key" in message


def test_refused_keys_are_logged_by_key_id_never_the_key(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    chat(client, {"X-API-Key": "a-guessed-key"})
    chat(client, {})
    out = capsys.readouterr().out
    refused = [e for e in map(json.loads, out.splitlines()) if e["message"] == "client key refused"]
    assert [e["severity"] for e in refused] == ["WARNING", "WARNING"]
    assert [e["key_id"] for e in refused] == [key_id("a-guessed-key"), None]
    assert all(e["client"].startswith("ip:") for e in refused)
    assert "a-guessed-key" not in out


def test_a_revoked_key_is_refused_within_the_refresh_period_on_a_real_server(
    env: Env, tmp_path: Path
) -> None:
    """The replacement keeps the size and mtime of the revoked key's file, so stat() cannot
    tell them apart: the timed re-read (here every 0.5 s) still refuses the revoked key."""
    file = tmp_path / "keys"
    file.write_text("revoked-key-1\nother-key\n")
    os.utime(file, ns=(10**18, 10**18))
    env(CLIENT_API_KEYS=None, CLIENT_API_KEYS_FILE=str(file), CLIENT_KEYS_REFRESH_SECONDS="0.5")
    with serve_in_thread(create_app(), lifespan="on") as url:

        def status(key: str) -> int:
            headers = {"X-API-Key": key}
            return httpx.post(f"{url}/v1/chat", json={"message": "hi"}, headers=headers).status_code

        assert status("revoked-key-1") == 200
        before = file.stat()
        file.write_text("renewed-key-1\nother-key\n")
        os.utime(file, ns=(10**18, 10**18))
        after = file.stat()
        assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
        revoked_at = time.monotonic()
        while status("revoked-key-1") != 401:
            assert time.monotonic() - revoked_at < 5, "the revoked key still works after 5 s"
            time.sleep(0.05)
        assert time.monotonic() - revoked_at < 0.5 + 1  # the period, plus scheduling slack
        assert status("renewed-key-1") == 200
        assert status("other-key") == 200


def test_health_and_ready_need_no_key(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    client.post("/v1/chat", json={"message": "hi"}, headers={"X-API-Key": CLIENT_KEY})
    assert client.get("/ready").status_code == 200


@pytest.mark.parametrize("content", [None, "", "\n  \n"], ids=["missing", "empty", "blank"])
def test_no_usable_keys_is_503_not_ready_never_open(
    make_client: MakeClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
) -> None:
    """A missing or empty client-keys secret: /ready and /v1 answer 503 "not ready" with a code,
    the path and the cause only in the log line."""
    file = tmp_path / "keys"
    if content is not None:
        file.write_text(content)
    client = make_client(CLIENT_API_KEYS=None, CLIENT_API_KEYS_FILE=str(file))
    status, body = chat(client, {"X-API-Key": "anything"})
    assert (status, body) == (
        503,
        {"error": {"code": "client_keys_unavailable", "message": "not ready"}},
    )
    deadline = time.monotonic() + 5
    while (ready := client.get("/ready")).json().get("code") == "starting":
        assert time.monotonic() < deadline, "the OpenAI key took over 5 s to load"
        time.sleep(0.02)
    assert (ready.status_code, ready.json()) == (
        503,
        {"status": "not ready", "code": "client_keys_unavailable"},
    )
    out = capsys.readouterr().out
    errors = [e["message"] for e in map(json.loads, out.splitlines()) if e["severity"] == "ERROR"]
    assert errors
    assert all(str(file) in message for message in errors)
    assert str(file) not in ready.text + json.dumps(body)


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
