"""Secret resolution: env var, then file, then Secret Manager (through the real client)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from app.core.secrets import SecretSource, SecretUnavailable, resolve_secret
from tests.fakes.secret_manager import FakeSecretManager

PROJECT = "demo-project"


def source(
    value: str | None = None,
    file: Path | None = None,
    secret: str = "openai-api-key",
    emulator_host: str | None = None,
    project: str | None = PROJECT,
) -> SecretSource:
    return SecretSource(
        env_name="OPENAI_API_KEY",
        value=SecretStr(value) if value is not None else None,
        file=file,
        secret=secret,
        version="latest",
        project=project,
        emulator_host=emulator_host,
    )


def test_env_var_wins_and_loses_its_trailing_newline(tmp_path: Path) -> None:
    file = tmp_path / "key"
    file.write_text("from-file")
    assert resolve_secret(source(value="sk-env\n", file=file)) == "sk-env"


def test_file_is_read_when_no_env_var(tmp_path: Path) -> None:
    file = tmp_path / "key"
    file.write_text("sk-file\n")
    assert resolve_secret(source(file=file)) == "sk-file"


def test_a_file_that_cannot_be_read_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SecretUnavailable, match=r"cannot read .*missing"):
        resolve_secret(source(file=tmp_path / "missing"))


def test_an_empty_secret_is_an_error(tmp_path: Path) -> None:
    file = tmp_path / "key"
    file.write_text("\n")
    with pytest.raises(SecretUnavailable, match="empty"):
        resolve_secret(source(file=file))


@pytest.fixture
def sm(secret_manager: FakeSecretManager) -> FakeSecretManager:
    secret_manager.secrets.clear()
    secret_manager.forbidden.clear()
    secret_manager.corrupt.clear()
    return secret_manager


def test_secret_manager_payload_is_returned_stripped(sm: FakeSecretManager) -> None:
    sm.secrets[(PROJECT, "openai-api-key", "latest")] = b"sk-from-secret-manager\n"
    assert resolve_secret(source(emulator_host=sm.host)) == "sk-from-secret-manager"
    assert sm.accessed[-1] == f"projects/{PROJECT}/secrets/openai-api-key/versions/latest"


def test_missing_secret_explains_how_to_create_it(sm: FakeSecretManager) -> None:
    with pytest.raises(SecretUnavailable) as error:
        resolve_secret(source(emulator_host=sm.host))
    message = str(error.value)
    assert f"openai-api-key (version latest) not found in project {PROJECT}" in message
    assert "gcloud secrets create openai-api-key --data-file=-" in message


def test_permission_denied_names_the_role_to_grant(sm: FakeSecretManager) -> None:
    sm.secrets[(PROJECT, "openai-api-key", "latest")] = b"sk-hidden-value"
    sm.forbidden.add((PROJECT, "openai-api-key", "latest"))
    with pytest.raises(SecretUnavailable) as error:
        resolve_secret(source(emulator_host=sm.host))
    assert "roles/secretmanager.secretAccessor" in str(error.value)
    assert "gcloud secrets add-iam-policy-binding openai-api-key" in str(error.value)
    assert "sk-hidden-value" not in str(error.value)


def test_a_bad_checksum_is_refused(sm: FakeSecretManager) -> None:
    sm.secrets[(PROJECT, "openai-api-key", "latest")] = b"sk-corrupted"
    sm.corrupt.add((PROJECT, "openai-api-key", "latest"))
    with pytest.raises(SecretUnavailable, match="CRC32C") as error:
        resolve_secret(source(emulator_host=sm.host))
    assert "sk-corrupted" not in str(error.value)


def test_without_credentials_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No emulator, no ADC file, no metadata server: tell the user what to set."""
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with pytest.raises(SecretUnavailable) as error:
        resolve_secret(source())
    assert "set OPENAI_API_KEY" in str(error.value)
    assert "gcloud auth application-default login" in str(error.value)
