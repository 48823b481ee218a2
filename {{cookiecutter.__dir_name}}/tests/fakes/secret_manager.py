"""A local stand-in for Secret Manager's REST API, for the real google-cloud-secret-manager client.

Speaks `GET /v1/projects/P/secrets/S/versions/V:access` and answers like Google: the payload
base64-encoded with its `dataCrc32c`, 404 NOT_FOUND for unknown secrets, 403 PERMISSION_DENIED
for secrets listed in `forbidden`, and a wrong checksum for those listed in `corrupt`.
Point the service at it with SECRET_MANAGER_EMULATOR_HOST=127.0.0.1:PORT.

    with FakeSecretManager().serve() as sm:
        sm.secrets[("my-project", "openai-api-key", "latest")] = b"sk-..."
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager

import google_crc32c
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import serve_in_thread

SecretKey = tuple[str, str, str]  # (project, secret, version)


def _status(code: int, status: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "status": status}}, status_code=code
    )


class FakeSecretManager:
    def __init__(self) -> None:
        self.secrets: dict[SecretKey, bytes] = {}
        self.forbidden: set[SecretKey] = set()
        self.corrupt: set[SecretKey] = set()
        self.accessed: list[str] = []
        self.host = ""
        self.app = Starlette(
            routes=[
                Route(
                    "/v1/projects/{project}/secrets/{secret}/versions/{version}:access",
                    self.access,
                    methods=["GET"],
                )
            ]
        )

    @contextmanager
    def serve(self) -> Iterator[FakeSecretManager]:
        """Serve on 127.0.0.1; `host` is the value for SECRET_MANAGER_EMULATOR_HOST."""
        with serve_in_thread(self.app) as url:
            self.host = url.removeprefix("http://")
            yield self

    async def access(self, request: Request) -> JSONResponse:
        p = request.path_params
        key: SecretKey = (p["project"], p["secret"], p["version"])
        name = f"projects/{key[0]}/secrets/{key[1]}/versions/{key[2]}"
        self.accessed.append(name)
        if key in self.forbidden:
            return _status(403, "PERMISSION_DENIED", f"Permission denied on {name}")
        if key not in self.secrets:
            return _status(404, "NOT_FOUND", f"Secret [{name}] not found or has no versions.")
        data = self.secrets[key]
        checksum = google_crc32c.value(data) + (1 if key in self.corrupt else 0)
        payload = {"data": base64.b64encode(data).decode(), "dataCrc32c": str(checksum)}
        return JSONResponse({"name": name, "payload": payload})
