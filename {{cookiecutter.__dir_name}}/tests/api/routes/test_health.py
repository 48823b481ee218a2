"""GET /health and /ready."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core import openai_client
from tests.conftest import OPENAI_KEY, MakeClient
from tests.fakes.secret_manager import FakeSecretManager


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


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
        assert starting.json()["code"] == "starting"
    finally:
        release.set()


def test_not_ready_logs_the_actionable_reason_when_the_secret_is_missing(
    make_client: MakeClient,
    auth: dict[str, str],
    secret_manager: FakeSecretManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No env var, no file, and Secret Manager says NOT_FOUND: 503 with a short code, and an
    ERROR line naming the secret, the project and the fix.
    {{ "client_auth=iam callers (they hold roles/run.invoker) read the reason too." if cookiecutter.client_auth == "iam" else "The caller reads none of it." }}
    """
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
    assert body["code"] == "openai_key_unavailable"
    errors = [e["message"] for e in log_lines(capsys) if e["severity"] == "ERROR"]
    assert len(errors) == 1
    for detail in ("absent-secret", "demo-project", "gcloud secrets create"):
        assert detail in errors[0]
{%- if cookiecutter.client_auth == "iam" %}
        assert detail in body["reason"]
{%- else %}
        assert detail not in response.text
{%- endif %}


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_the_api_docs_are_off_unless_enabled(make_client: MakeClient, path: str) -> None:
    """They map every route for whoever finds the URL: DOCS_ENABLED=1 (`make run` sets it)."""
    assert make_client().get(path).status_code == 404
    assert make_client(DOCS_ENABLED="1").get(path).status_code == 200
