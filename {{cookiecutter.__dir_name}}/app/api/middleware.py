"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): trace context and a body size cap."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.core.logging import current_trace, trace_from_headers

MAX_BODY_BYTES = 1 << 20
# Methods whose body nobody reads here: their receive channel needs no counting.
NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestContext:
    """Per request, in one pass over the headers (this runs on every /health probe too):
    the trace id that log lines carry, and 413 for bodies over `max_bytes`, whether announced
    by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traceparent = cloud_trace = length = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent = value
            elif name == b"x-cloud-trace-context":
                cloud_trace = value
            elif name == b"content-length":
                length = value
        token = current_trace.set(trace_from_headers(_text(traceparent), _text(cloud_trace)))
        try:
            if length is not None and length.isdigit() and self._too_large(length):
                too_large = error_response(413, "body_too_large", self._message())
                await too_large(scope, receive, send)
            elif scope["method"] in NO_BODY_METHODS:
                await self.app(scope, receive, send)
            else:
                await self.app(scope, self._limited(receive), send)
        finally:
            current_trace.reset(token)

    def _too_large(self, length: bytes) -> bool:
        # int() refuses over 4,300 digits: a hostile Content-Length must not get that far.
        digits = length.lstrip(b"0")
        return len(digits) > len(str(self.max_bytes)) or int(digits or b"0") > self.max_bytes

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI passes an HTTPException raised while reading the body to the handlers.
                raise HTTPException(413, self._message())
            return message

        return limited

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
