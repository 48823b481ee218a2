"""Fixtures: the fake upstreams (one per session), environment-driven settings, a test client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings, get_settings
from app.main import create_app
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.secret_manager import FakeSecretManager

# google-auth reads this at import time: the tests never probe a metadata server.
os.environ["NO_GCE_CHECK"] = "true"

# The client_auth mode this service was generated with decides what chat requests must send.
CLIENT_AUTH = {{ cookiecutter.client_auth | tojson }}
OPENAI_KEY = "sk-test-openai-key-0123456789"
CLIENT_KEY = "client-key-one"


@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(slow_seconds=2.0, drip_seconds=0.05).serve() as fake:
        yield fake


@pytest.fixture
def fake_openai(openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The fake upstream, with nothing recorded and no key required."""
    openai_server.reset()
    openai_server.expected_key = None
    yield openai_server
    openai_server.expected_key = None


@pytest.fixture(scope="session")
def secret_manager() -> Iterator[FakeSecretManager]:
    with FakeSecretManager().serve() as fake:
        yield fake


Env = Callable[..., None]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI) -> Iterator[Env]:
    """Set service environment variables (None removes one); settings are re-read after each."""
    for name in Settings.model_fields:  # the developer's own shell must not leak in
        monkeypatch.delenv(name.upper(), raising=False)

    def set_env(**values: str | None) -> None:
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    set_env(
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=fake_openai.base_url,
        OPENAI_MAX_RETRIES="0",  # the faults must reach the service, not be retried away
        OPENAI_TIMEOUT_SECONDS="1",
        KEY_WAIT_SECONDS="2",
        CLIENT_API_KEYS=f"{CLIENT_KEY}\nclient-key-two",
    )
    yield set_env
    get_settings.cache_clear()


MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(env: Env) -> Iterator[MakeClient]:
    """A TestClient (lifespan running) for an app built after setting the given variables."""
    with ExitStack() as stack:

        def make(**values: str | None) -> TestClient:
            env(**values)
            return stack.enter_context(TestClient(create_app()))

        yield make


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


@pytest.fixture
def auth() -> dict[str, str]:
    """Headers a permitted caller sends in this client_auth mode."""
    return {"X-API-Key": CLIENT_KEY} if CLIENT_AUTH == "api-key" else {}
