"""Resolve a secret from an env var, else a mounted file, else Secret Manager.

Cloud Run's `--set-secrets` provides the env var or the file; Secret Manager is the fallback for
local runs and other hosts. google-cloud-secret-manager is imported only on that last path: its
import is a noticeable part of a cold start. Error messages say what to do and never contain
the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from google.cloud.secretmanager import SecretManagerServiceClient


class SecretUnavailable(Exception):
    """The secret could not be resolved; the message is safe to log and to show."""


@dataclass(frozen=True)
class SecretSource:
    env_name: str
    value: SecretStr | None
    file: Path | None
    secret: str
    version: str
    project: str | None
    emulator_host: str | None


def resolve_secret(source: SecretSource) -> str:
    """The secret's text, without the trailing newline `echo` leaves in secrets."""
    if source.value is not None:
        return _non_empty(source.value.get_secret_value(), source.env_name)
    if source.file is not None:
        return _non_empty(read_secret_file(source.file), f"the file {source.file}")
    return _non_empty(access_secret_version(source), f"secret {source.secret}")


def read_secret_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise SecretUnavailable(f"cannot read {path}: {error.strerror}") from None


def _non_empty(text: str, where: str) -> str:
    value = text.strip()
    if not value:
        raise SecretUnavailable(f"{where} is empty")
    return value


def access_secret_version(source: SecretSource) -> str:
    import google_crc32c
    from google.api_core import exceptions
    from google.auth.exceptions import DefaultCredentialsError

    try:
        client, project = _client_and_project(source)
    except DefaultCredentialsError:
        raise SecretUnavailable(
            f"no Google credentials to read secret {source.secret}: set {source.env_name}, or run "
            "`gcloud auth application-default login`"
        ) from None
    name = f"projects/{project}/secrets/{source.secret}/versions/{source.version}"
    try:
        response = client.access_secret_version(request={"name": name}, timeout=10)
    except exceptions.NotFound:
        raise SecretUnavailable(
            f"secret {source.secret} (version {source.version}) not found in project {project}; "
            f"create it: printf %s VALUE | gcloud secrets create {source.secret} "
            f"--data-file=- --project={project}"
        ) from None
    except exceptions.Forbidden:  # PermissionDenied over gRPC, Forbidden over REST
        raise SecretUnavailable(
            f"permission denied on secret {source.secret} in project {project}: grant "
            "roles/secretmanager.secretAccessor: gcloud secrets add-iam-policy-binding "
            f"{source.secret} --project={project} --member=serviceAccount:SA_EMAIL "
            "--role=roles/secretmanager.secretAccessor"
        ) from None
    except exceptions.BadRequest as error:  # FailedPrecondition over gRPC: a disabled version
        if "DISABLED state" not in str(error):
            raise SecretUnavailable(f"Secret Manager refused {name}: {error.message}") from None
        raise SecretUnavailable(
            f"secret {source.secret} version {source.version} is in DISABLED state in project "
            f"{project}: enable it (gcloud secrets versions enable VERSION --secret="
            f"{source.secret} --project={project}) or add a new version"
        ) from None
    except exceptions.GoogleAPIError as error:
        raise SecretUnavailable(f"Secret Manager failed for {source.secret}: {error}") from None
    payload = response.payload
    if google_crc32c.value(payload.data) != payload.data_crc32c:
        raise SecretUnavailable(f"secret {name} failed its CRC32C check (corrupted in transit)")
    return bytes(payload.data).decode("utf-8")


def _client_and_project(source: SecretSource) -> tuple[SecretManagerServiceClient, str]:
    """A client for Google, or for the emulator named by SECRET_MANAGER_EMULATOR_HOST."""
    import google.auth
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    if source.emulator_host:
        client = secretmanager.SecretManagerServiceClient(
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            transport="rest",
            client_options=ClientOptions(api_endpoint=f"http://{source.emulator_host}"),
        )
        return client, source.project or "emulator-project"
    credentials, adc_project = google.auth.default()
    project = source.project or adc_project
    if not project:
        raise SecretUnavailable(
            f"no Google Cloud project for secret {source.secret}: set GOOGLE_CLOUD_PROJECT"
        )
    return secretmanager.SecretManagerServiceClient(credentials=credentials), project
