"""A local stand-in for Secret Manager's REST API, for the real google-cloud-secret-manager client.

Speaks `GET /v1/projects/P/secrets/S/versions/V:access` and answers like Google: the payload
base64-encoded with its `dataCrc32c`, 404 NOT_FOUND for unknown secrets, 403 PERMISSION_DENIED
for secrets listed in `forbidden`, a wrong checksum for those listed in `corrupt`, 400
FAILED_PRECONDITION for versions listed in `disabled`, and 503 UNAVAILABLE for the next N reads
of a secret with N in `unavailable`. Point the service at it with
SECRET_MANAGER_EMULATOR_HOST=127.0.0.1:PORT.

    with FakeSecretManager().serve() as sm:
        sm.secrets[("my-project", "openai-api-key", "latest")] = b"sk-..."

As a process, its state from a JSON file of the attributes above, keys written "P/S/V":
    python -m tests.fakes.secret_manager --port 8082 --state state.json
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import google_crc32c
import uvicorn
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
        self.disabled: set[SecretKey] = set()
        self.unavailable: dict[SecretKey, int] = {}
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
        if self.unavailable.get(key, 0) > 0:
            self.unavailable[key] -= 1
            return _status(503, "UNAVAILABLE", "The service is currently unavailable.")
        if key in self.disabled:
            message = f"Secret Version [{name}] is in DISABLED state."
            return _status(400, "FAILED_PRECONDITION", message)
        if key in self.forbidden:
            return _status(403, "PERMISSION_DENIED", f"Permission denied on {name}")
        if key not in self.secrets:
            return _status(404, "NOT_FOUND", f"Secret [{name}] not found or has no versions.")
        data = self.secrets[key]
        checksum = google_crc32c.value(data) + (1 if key in self.corrupt else 0)
        payload = {"data": base64.b64encode(data).decode(), "dataCrc32c": str(checksum)}
        return JSONResponse({"name": name, "payload": payload})


def _key(text: str) -> SecretKey:
    project, secret, version = text.split("/")
    return project, secret, version


def main() -> None:
    parser = argparse.ArgumentParser(description="Secret Manager REST stand-in on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    state = json.loads(args.state.read_text())
    fake = FakeSecretManager()
    fake.secrets = {_key(k): v.encode() for k, v in state.get("secrets", {}).items()}
    for field in ("forbidden", "corrupt", "disabled"):
        setattr(fake, field, {_key(k) for k in state.get(field, [])})
    fake.unavailable = {_key(k): n for k, n in state.get("unavailable", {}).items()}
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
