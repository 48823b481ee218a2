"""Client API keys (client_auth=api-key): loading, rotation and constant-time checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.core.client_keys import ClientKeys
from app.core.config import Settings
from app.core.secrets import SecretUnavailable
from tests.conftest import Env
from tests.fakes.secret_manager import FakeSecretManager


def keys_from(env: Env, **values: str | None) -> ClientKeys:
    env(**{"CLIENT_API_KEYS": None, **values})
    return ClientKeys(Settings())


def test_env_keys_one_per_line(env: Env) -> None:
    keys = keys_from(env, CLIENT_API_KEYS="alpha\n\n  beta  \n")
    assert keys.is_valid("alpha")
    assert keys.is_valid("beta")
    assert not keys.is_valid("alph")
    assert not keys.is_valid("")


def test_file_changes_take_effect_without_a_restart(env: Env, tmp_path: Path) -> None:
    """Cloud Run mounts each new secret version over the file: revocation needs no redeploy."""
    file = tmp_path / "keys"
    file.write_text("old-key\nkept-key\n")
    keys = keys_from(env, CLIENT_API_KEYS_FILE=str(file))
    assert keys.is_valid("old-key")
    file.write_text("kept-key\nnew-key\n")
    os.utime(file, ns=(1, 1))  # a different mtime even on coarse clocks
    assert not keys.is_valid("old-key")
    assert keys.is_valid("new-key")
    assert keys.is_valid("kept-key")


def test_no_keys_at_all_is_an_error_not_an_open_door(env: Env, tmp_path: Path) -> None:
    file = tmp_path / "keys"
    file.write_text("\n")
    with pytest.raises(SecretUnavailable):
        keys_from(env, CLIENT_API_KEYS_FILE=str(file)).is_valid("anything")


def test_secret_manager_keys_are_fetched_again_after_the_refresh_period(
    env: Env, secret_manager: FakeSecretManager
) -> None:
    env(
        CLIENT_API_KEYS=None,
        SECRET_MANAGER_EMULATOR_HOST=secret_manager.host,
        GOOGLE_CLOUD_PROJECT="demo-project",
        CLIENT_API_KEYS_SECRET="client-keys",
    )
    now = [0.0]
    keys = ClientKeys(Settings(), refresh_seconds=60, clock=lambda: now[0])
    secret_manager.secrets[("demo-project", "client-keys", "latest")] = b"first\n"
    assert keys.is_valid("first")
    secret_manager.secrets[("demo-project", "client-keys", "latest")] = b"second\n"
    assert keys.is_valid("first")  # cached within the period
    now[0] += 61
    assert keys.is_valid("second")
    assert not keys.is_valid("first")
