"""Client API keys (client_auth=api-key): loading, timed re-reads and constant-time checks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from app.core.client_keys import ClientKeys, key_id
from app.core.config import Settings
from app.core.secrets import SecretUnavailable
from tests.conftest import Env
from tests.fakes.secret_manager import FakeSecretManager


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def keys_from(env: Env, clock: Clock | None = None, **values: str | None) -> ClientKeys:
    env(**{"CLIENT_API_KEYS": None, **values})
    return ClientKeys(Settings(), clock=clock or Clock())


def valid(keys: ClientKeys, presented: str) -> bool:
    return asyncio.run(keys.is_valid(presented))


def test_env_keys_one_per_line(env: Env) -> None:
    keys = keys_from(env, CLIENT_API_KEYS="alpha\n\n  beta  \n")
    assert valid(keys, "alpha")
    assert valid(keys, "beta")
    assert not valid(keys, "alph")
    assert not valid(keys, "")


def test_a_file_is_read_again_after_the_refresh_period_whatever_stat_says(
    env: Env, tmp_path: Path
) -> None:
    """A replacement with the same size and mtime (what stat() cannot tell apart) is seen once
    the keys are CLIENT_KEYS_REFRESH_SECONDS old, and not before."""
    file = tmp_path / "keys"
    file.write_text("old-key-1\nkept-key\n")
    os.utime(file, ns=(1, 1))
    clock = Clock()
    keys = keys_from(env, clock, CLIENT_API_KEYS_FILE=str(file), CLIENT_KEYS_REFRESH_SECONDS="30")
    assert valid(keys, "old-key-1")
    file.write_text("new-key-1\nkept-key\n")
    os.utime(file, ns=(1, 1))
    clock.now += 29
    assert valid(keys, "old-key-1")  # within the period: the keys read 29 s ago
    clock.now += 1
    assert not valid(keys, "old-key-1")
    assert valid(keys, "new-key-1")
    assert valid(keys, "kept-key")


def test_the_refresh_period_is_at_most_30_seconds(env: Env) -> None:
    env(CLIENT_KEYS_REFRESH_SECONDS="31")
    with pytest.raises(ValueError, match="client_keys_refresh_seconds"):
        Settings()


def test_no_keys_at_all_is_an_error_not_an_open_door(env: Env, tmp_path: Path) -> None:
    file = tmp_path / "keys"
    file.write_text("\n")
    keys = keys_from(env, CLIENT_API_KEYS_FILE=str(file))
    with pytest.raises(SecretUnavailable):
        valid(keys, "anything")
    assert not keys.ready
    assert "is empty" in keys.reason


def test_an_emptied_file_refuses_the_keys_it_held(env: Env, tmp_path: Path) -> None:
    """Failing closed: a failed re-read never keeps serving keys that may have been revoked."""
    file = tmp_path / "keys"
    file.write_text("only-key\n")
    clock = Clock()
    keys = keys_from(env, clock, CLIENT_API_KEYS_FILE=str(file))
    assert valid(keys, "only-key")
    file.write_text("")
    clock.now += 30
    with pytest.raises(SecretUnavailable):
        valid(keys, "only-key")


def test_secret_manager_keys_are_fetched_again_after_the_refresh_period(
    env: Env, secret_manager: FakeSecretManager
) -> None:
    clock = Clock()
    keys = keys_from(
        env,
        clock,
        SECRET_MANAGER_EMULATOR_HOST=secret_manager.host,
        GOOGLE_CLOUD_PROJECT="demo-project",
        CLIENT_API_KEYS_SECRET="client-keys",
    )
    secret_manager.secrets[("demo-project", "client-keys", "latest")] = b"first\n"
    assert valid(keys, "first")
    secret_manager.secrets[("demo-project", "client-keys", "latest")] = b"second\n"
    assert valid(keys, "first")  # cached within the period
    clock.now += 30
    assert valid(keys, "second")
    assert not valid(keys, "first")


def test_a_key_id_names_a_key_without_revealing_it() -> None:
    assert key_id("client-key-one") == key_id("client-key-one")
    assert key_id("client-key-one") != key_id("client-key-two")
    assert key_id("client-key-one").startswith("key:")
    assert "client-key-one" not in key_id("client-key-one")
