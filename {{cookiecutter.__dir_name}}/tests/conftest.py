"""Fixtures: the fake upstreams (one per session), environment-driven settings, a test client,
and a real redis-server for the shared limits and budgets."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings, get_settings
from app.main import create_app
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.redis_server import INSTALL_HINT, RedisServer, redis_available
from tests.fakes.secret_manager import FakeSecretManager

# google-auth reads this at import time: the tests never probe a metadata server.
os.environ["NO_GCE_CHECK"] = "true"

# The client_auth mode this service was generated with decides what chat requests must send.
CLIENT_AUTH = {{ cookiecutter.client_auth | tojson }}
OPENAI_KEY = "sk-test-openai-key-0123456789"
CLIENT_KEY = "client-key-one"
# CI systems set CI=true (GitHub Actions does): there a missing tool fails the tests that need it.
IN_CI = os.environ.get("CI") == "true"


def require(available: bool, reason: str) -> None:
    """Skip locally when a tool is missing; under CI=true a missing tool is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests that need it must run, not skip)")
    pytest.skip(reason)


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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require(redis_available(), INSTALL_HINT)
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis(redis_server: RedisServer) -> RedisServer:
    """The session's redis-server, running (a test may have stopped it) and empty."""
    if not redis_server.running:
        redis_server.start()
    assert redis_server.cli("FLUSHALL") == "OK"
    return redis_server


@pytest.fixture
def redis_dir(tmp_path: Path) -> Path:
    """A directory for a redis-server of the test's own (AUTH, TLS); skips without redis-server."""
    require(redis_available(), INSTALL_HINT)
    return tmp_path
