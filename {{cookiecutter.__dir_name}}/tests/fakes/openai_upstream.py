"""A real OpenAI-compatible HTTP server for tests, benchmarks and load tests.

Speaks `POST /v1/chat/completions` (JSON, or SSE with `"stream": true`) and `GET /v1/models`.
The reply echoes the last user message, one word per streamed chunk, with `usage`.
A behaviour is picked per request by a token in the last user message:

    fault:401        401 invalid_api_key          fault:429   429 with Retry-After: 7
    fault:500        500 server error             fault:slow  wait `slow_seconds`, then answer
    fault:malformed  200 whose body is not JSON   fault:drip  stream, `drip_seconds` per chunk
    fault:cut-stream send one chunk, then drop the connection
    fault:drop       drop the connection right after the headers, before any body
    fault:html       200 text/html (a proxy's error page instead of the API)

Setting `expected_key` makes every other bearer token a 401 (key rotation tests).
Everything received is recorded on the `FakeOpenAI` instance; `reset()` clears it.
`GET /_fake/stats` reports the counters, for tests that run the fake as a process.
Add a fault: one entry in `FAULTS` (a coroutine returning a response).

In tests:       with FakeOpenAI().serve() as fake: ... fake.base_url ...
As a process:   python -m tests.fakes.openai_upstream --port 8081
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.server import serve_in_thread

FAULT = re.compile(r"fault:([a-z0-9-]+)")


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": f"fake upstream: {code}", "type": code, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class FakeOpenAI:
    """The server's state: what it received and how slow its slow faults are."""

    def __init__(self, slow_seconds: float = 5.0, drip_seconds: float = 0.05) -> None:
        self.slow_seconds = slow_seconds
        self.drip_seconds = drip_seconds
        self.expected_key: str | None = None
        self.base_url = ""
        self.reset()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/_fake/stats", self.stats, methods=["GET"]),
            ]
        )

    def reset(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.streams_opened = 0
        self.streams_closed = 0

    @contextmanager
    def serve(self, port: int = 0) -> Iterator[FakeOpenAI]:
        """Serve on 127.0.0.1 in a background thread; `base_url` ends in /v1 like OpenAI's."""
        with serve_in_thread(self.app, port) as url:
            self.base_url = f"{url}/v1"
            yield self

    async def stats(self, request: Request) -> Response:
        opened, closed = self.streams_opened, self.streams_closed
        counts = {
            "requests": len(self.requests),
            "streams_opened": opened,
            "streams_closed": closed,
        }
        return JSONResponse(counts)

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        authorization = request.headers.get("authorization", "")
        self.authorizations.append(authorization)
        if self.expected_key is not None and authorization != f"Bearer {self.expected_key}":
            return _error(401, "invalid_api_key")
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        last = str(body["messages"][-1].get("content", "")) if body.get("messages") else ""
        fault = FAULT.search(last)
        if fault and fault[1] in FAULTS:
            return await FAULTS[fault[1]](self, body, last)
        return self.reply(body, prompt, last)

    def reply(self, body: dict[str, Any], prompt: str, last: str) -> Response:
        words = f"echo: {last}".split()
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if limit is not None and len(words) > limit:
            words, finish = words[:limit], "length"
        usage = {
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": len(words),
            "total_tokens": len(prompt.split()) + len(words),
        }
        if body.get("stream"):
            return self.stream(body, words, usage, finish=finish)
        message = {"role": "assistant", "content": " ".join(words)}
        return JSONResponse(
            {
                **_envelope(body, "chat.completion"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }
        )

    def stream(
        self,
        body: dict[str, Any],
        words: list[str],
        usage: dict[str, int],
        *,
        finish: str = "stop",
        delay: float = 0.0,
        cut_after: int | None = None,
    ) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            self.streams_opened += 1
            try:
                for index, word in enumerate(words):
                    if index == cut_after:
                        raise ConnectionAbortedError("fault:cut-stream")
                    content = word if index == 0 else f" {word}"
                    yield _chunk(body, {"content": content}, None)
                    if delay:
                        await asyncio.sleep(delay)
                yield _chunk(body, {}, finish)
                if (body.get("stream_options") or {}).get("include_usage"):
                    final = {**_envelope(body), "choices": [], "usage": usage}
                    yield f"data: {json.dumps(final)}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                self.streams_closed += 1

        return StreamingResponse(events(), media_type="text/event-stream")


def _envelope(body: dict[str, Any], kind: str = "chat.completion.chunk") -> dict[str, Any]:
    created = int(time.time())
    return {"id": "chatcmpl-fake", "object": kind, "created": created, "model": body.get("model")}


def _chunk(body: dict[str, Any], delta: dict[str, str], finish: str | None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return f"data: {json.dumps({**_envelope(body), 'choices': [choice]})}\n\n"


async def _slow(fake: FakeOpenAI, body: dict[str, Any], last: str) -> Response:
    await asyncio.sleep(fake.slow_seconds)
    return fake.reply(body, last, last)


async def _drip(fake: FakeOpenAI, body: dict[str, Any], last: str) -> Response:
    words = f"echo: {last}".split() * 20
    usage = {"prompt_tokens": 1, "completion_tokens": len(words), "total_tokens": len(words) + 1}
    return fake.stream(body, words, usage, delay=fake.drip_seconds)


async def _cut(fake: FakeOpenAI, body: dict[str, Any], last: str) -> Response:
    return fake.stream(body, ["partial", "reply"], {}, cut_after=1)


async def _malformed(fake: FakeOpenAI, body: dict[str, Any], last: str) -> Response:
    return Response("{not json", media_type="application/json")


async def _status(fake: FakeOpenAI, body: dict[str, Any], last: str, status: int) -> Response:
    codes = {401: "invalid_api_key", 429: "rate_limit_exceeded", 500: "server_error"}
    headers = {"Retry-After": "7"} if status == 429 else None
    return _error(status, codes[status], headers)


async def _as_response(response: Response) -> Response:
    return response


Fault = Callable[[FakeOpenAI, dict[str, Any], str], Awaitable[Response]]
FAULTS: dict[str, Fault] = {
    "401": lambda f, b, m: _status(f, b, m, 401),
    "429": lambda f, b, m: _status(f, b, m, 429),
    "500": lambda f, b, m: _status(f, b, m, 500),
    "slow": _slow,
    "drip": _drip,
    "cut-stream": _cut,
    "malformed": _malformed,
    "drop": lambda f, b, m: _as_response(f.stream(b, ["never sent"], {}, cut_after=0)),
    "html": lambda f, b, m: _as_response(Response("<html>502</html>", media_type="text/html")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument("--drip-seconds", type=float, default=0.05)
    args = parser.parse_args()
    fake = FakeOpenAI(slow_seconds=args.slow_seconds, drip_seconds=args.drip_seconds)
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
