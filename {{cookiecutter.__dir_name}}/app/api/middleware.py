"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): trace context and a body size cap."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.core.logging import current_trace, trace_from_headers

MAX_BODY_BYTES = 1 << 20


class TraceContext:
    """Lines logged while serving a request carry its trace id (Cloud Logging groups them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        trace = trace_from_headers(
            _text(headers.get(b"traceparent")), _text(headers.get(b"x-cloud-trace-context"))
        )
        token = current_trace.set(trace)
        try:
            await self.app(scope, receive, send)
        finally:
            current_trace.reset(token)


class BodySizeLimit:
    """413 for bodies over `max_bytes`, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_bytes:
            too_large = error_response(413, "body_too_large", self._message())
            await too_large(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI passes an HTTPException raised while reading the body to the handlers.
                raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
