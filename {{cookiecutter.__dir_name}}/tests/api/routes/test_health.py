"""GET /health and /ready."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from app.core import openai_client
from tests.conftest import OPENAI_KEY, MakeClient
from tests.fakes.secret_manager import FakeSecretManager


def test_health_answers_ok(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_once_the_key_is_resolved(client: TestClient, auth: dict[str, str]) -> None:
    client.post("/v1/chat", json={"message": "hi"}, headers=auth)  # waits for startup
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_health_answers_while_the_key_is_still_being_resolved(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/health never waits for the key; /ready says `starting` until it is there."""
    release = threading.Event()

    def slow_resolve(source: object) -> str:
        release.wait(5)
        return OPENAI_KEY

    monkeypatch.setattr(openai_client, "resolve_secret", slow_resolve)
    client = make_client()
    try:
        assert client.get("/health").status_code == 200
        starting = client.get("/ready")
        assert starting.status_code == 503
        assert starting.json() == {"status": "not ready", "reason": "starting"}
    finally:
        release.set()


def test_not_ready_with_an_actionable_reason_when_the_secret_is_missing(
    make_client: MakeClient, auth: dict[str, str], secret_manager: FakeSecretManager
) -> None:
    """No env var, no file, and Secret Manager says NOT_FOUND: 503 naming the fix."""
    client = make_client(
        OPENAI_API_KEY=None,
        SECRET_MANAGER_EMULATOR_HOST=secret_manager.host,
        GOOGLE_CLOUD_PROJECT="demo-project",
        OPENAI_API_KEY_SECRET="absent-secret",
    )
    client.post("/v1/chat", json={"message": "hi"}, headers=auth)  # waits for startup to end
    response = client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert "absent-secret" in body["reason"]
    assert "demo-project" in body["reason"]
    assert "gcloud secrets create" in body["reason"]
