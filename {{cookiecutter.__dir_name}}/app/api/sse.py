"""Server-sent events that proxies keep open: no caching, and a comment while nothing is said."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse
from starlette.types import Send

KEEPALIVE = {"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True}


class EventStream(StreamingResponse):
    """`text/event-stream` that sends a `: keep-alive` comment (which SSE clients ignore) once
    nothing was sent for `keepalive` seconds, e.g. while a model thinks before its first token.

    One timer task per stream, not per event: each event only notes the time it was sent.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str], keepalive: float) -> None:
        # no-cache: no proxy may hold the stream back; X-Accel-Buffering: nginx-style proxies.
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(content, headers=headers)
        self.keepalive = keepalive
        self._last_sent = 0.0

    async def stream_response(self, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        loop = asyncio.get_running_loop()
        self._last_sent = loop.time()
        pinger = asyncio.create_task(self._keep_alive(send))
        try:
            async for chunk in self.body_iterator:
                body = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                self._last_sent = loop.time()
        finally:
            pinger.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _keep_alive(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._last_sent + self.keepalive - loop.time())
            if loop.time() - self._last_sent >= self.keepalive:
                await send(KEEPALIVE)
                self._last_sent = loop.time()
