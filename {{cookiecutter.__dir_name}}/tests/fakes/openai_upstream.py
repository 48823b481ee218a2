"""A real OpenAI-compatible HTTP server for tests, benchmarks and load tests.

Speaks both OpenAI APIs, each as JSON or as SSE with `"stream": true`:
`POST /v1/responses` (Responses: typed events, `response.completed` with `usage`, no [DONE]) and
`POST /v1/chat/completions` (chunks, a finish_reason, a usage chunk, [DONE]); and `GET /v1/models`.
The reply echoes the last user message, one word per streamed delta, with `usage`; a cap
(`max_output_tokens` / `max_completion_tokens`) shorter than the reply stops it early.
A behaviour is picked per request by a token in the last user message, the same on both APIs:

    fault:401        401 invalid_api_key            fault:429      429 with Retry-After: 7
    fault:quota      429 insufficient_quota         fault:500      500 server error
    fault:500-once   500 the first time for this exact message, then the normal answer
    fault:slow       wait `slow_seconds`, then answer (status line included)
    fault:stall      stream: headers at once, then `slow_seconds` of silence before the first event
    fault:drip       stream, `drip_seconds` per delta
    fault:cut-stream send one delta, then drop the connection (a JSON request too)
    fault:truncated  deltas, then a clean end with no finish (no finish_reason / no completed)
    fault:malformed  JSON: a 200 whose body is not JSON; stream: one delta, then a broken chunk
    fault:drop       drop the connection right after the headers, before any body
    fault:html       200 text/html (a proxy's error page instead of the API)
    fault:failed     Responses: a failed response (response.failed); Chat: an in-band error chunk
    fault:error      Responses: an `error` event; Chat: an in-band error chunk
    fault:reasoning  the whole cap spent on reasoning: no text, stopped early, reasoning_tokens

Setting `expected_key` (`--expected-key`) makes every other bearer token a 401 (key rotation).
Responses answers are stored (unless `"store": false`), and an unknown `previous_response_id` is
a 400 `previous_response_not_found`, as OpenAI answers. Everything received is recorded on the
`FakeOpenAI` instance; `reset()` clears it. `GET /_fake/stats` reports the counters.
Add a fault: one entry in `FAULTS`; an API: one `Dialect`.

In tests:       with FakeOpenAI().serve() as fake: ... fake.base_url ...
As a process:   python -m tests.fakes.openai_upstream --port 8081
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.server import serve_in_thread

FAULT = re.compile(r"fault:([a-z0-9-]+)")
ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded", 500: "server_error"}
ERROR_TYPES = {401: "invalid_request_error", 429: "requests", 500: "server_error"}
Json = dict[str, Any]


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = "insufficient_quota" if code == "insufficient_quota" else ERROR_TYPES.get(status)
    error = {"message": f"fake upstream: {code}", "type": kind, "param": None, "code": code}
    body = {"error": error}
    headers = {"x-request-id": f"req_fake_{code}", **(headers or {})}
    return JSONResponse(body, status_code=status, headers=headers)


def _sse(data: Json | str, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


@dataclass
class Answer:
    """What one request gets: its words, and whether they are the whole answer."""

    body: Json
    words: list[str]
    whole: bool  # False: stopped early (the cap was reached)
    usage: Json  # {"input", "output", "reasoning"}
    response_id: str


class Dialect:
    """How one OpenAI API asks and answers; the faults are written once, against this."""

    path = ""

    def turns(self, body: Json) -> list[Json]:
        raise NotImplementedError

    def limit(self, body: Json) -> int | None:
        raise NotImplementedError

    def reply(self, answer: Answer) -> Json:
        raise NotImplementedError

    def start(self, answer: Answer) -> list[str]:
        return []

    def delta(self, answer: Answer, text: str) -> str:
        raise NotImplementedError

    def end(self, answer: Answer) -> list[str]:
        raise NotImplementedError

    def failure(self, answer: Answer, fault: str) -> str:
        raise NotImplementedError

    def closing(self, body: Json) -> list[str]:
        """What a stream that stops without finishing sends last (Chat: [DONE])."""
        return []


class Responses(Dialect):
    path = "/v1/responses"

    def turns(self, body: Json) -> list[Json]:
        given = body.get("input", [])
        turns = [{"role": "user", "content": given}] if isinstance(given, str) else list(given)
        if body.get("instructions"):
            turns.insert(0, {"role": "system", "content": body["instructions"]})
        return turns

    def limit(self, body: Json) -> int | None:
        return body.get("max_output_tokens")

    def response(self, answer: Answer, status: str) -> Json:
        text = " ".join(answer.words)
        output = []
        if text:
            content = [{"type": "output_text", "text": text, "annotations": []}]
            message = {"type": "message", "id": "msg_fake", "role": "assistant"}
            output.append({**message, "status": status, "content": content})
        usage = answer.usage
        return {
            "id": answer.response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": answer.body.get("model"),
            "output": output,
            "incomplete_details": None if answer.whole else {"reason": "max_output_tokens"},
            "error": None,
            "previous_response_id": answer.body.get("previous_response_id"),
            "usage": {
                "input_tokens": usage["input"],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": usage["output"] + usage["reasoning"],
                "output_tokens_details": {"reasoning_tokens": usage["reasoning"]},
                "total_tokens": usage["input"] + usage["output"] + usage["reasoning"],
            },
        }

    def reply(self, answer: Answer) -> Json:
        return self.response(answer, "completed" if answer.whole else "incomplete")

    def start(self, answer: Answer) -> list[str]:
        created = {**self.response(answer, "in_progress"), "output": [], "usage": None}
        event = {"type": "response.created", "sequence_number": 0, "response": created}
        return [_sse(event, "response.created")]

    def delta(self, answer: Answer, text: str) -> str:
        event = {
            "type": "response.output_text.delta",
            "item_id": "msg_fake",
            "output_index": 0,
            "content_index": 0,
            "delta": text,
        }
        return _sse(event, "response.output_text.delta")

    def end(self, answer: Answer) -> list[str]:
        kind = "response.completed" if answer.whole else "response.incomplete"
        return [_sse({"type": kind, "response": self.reply(answer)}, kind)]

    def failure(self, answer: Answer, fault: str) -> str:
        if fault == "error":
            event = {"type": "error", "code": "server_error", "message": "fake", "param": None}
            return _sse(event, "error")
        return _sse({"type": "response.failed", "response": self.failed(answer)}, "response.failed")

    def failed(self, answer: Answer) -> Json:
        error = {"code": "server_error", "message": "fake failure"}
        return {**self.response(answer, "failed"), "error": error}


class ChatCompletions(Dialect):
    path = "/v1/chat/completions"

    def turns(self, body: Json) -> list[Json]:
        return list(body.get("messages", []))

    def limit(self, body: Json) -> int | None:
        return body.get("max_completion_tokens") or body.get("max_tokens")

    def envelope(self, answer: Answer, kind: str = "chat.completion.chunk") -> Json:
        model = answer.body.get("model")
        return {"id": "chatcmpl-fake", "object": kind, "created": int(time.time()), "model": model}

    def usage(self, answer: Answer) -> Json:
        usage = answer.usage
        output = usage["output"] + usage["reasoning"]
        return {
            "prompt_tokens": usage["input"],
            "completion_tokens": output,
            "total_tokens": usage["input"] + output,
            "completion_tokens_details": {"reasoning_tokens": usage["reasoning"]},
        }

    def finish(self, answer: Answer) -> str:
        return "stop" if answer.whole else "length"

    def reply(self, answer: Answer) -> Json:
        message = {"role": "assistant", "content": " ".join(answer.words)}
        choice = {"index": 0, "message": message, "finish_reason": self.finish(answer)}
        envelope = self.envelope(answer, "chat.completion")
        return {**envelope, "choices": [choice], "usage": self.usage(answer)}

    def chunk(self, answer: Answer, delta: Json, finish: str | None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse({**self.envelope(answer), "choices": [choice]})

    def delta(self, answer: Answer, text: str) -> str:
        return self.chunk(answer, {"content": text}, None)

    def end(self, answer: Answer) -> list[str]:
        events = [self.chunk(answer, {}, self.finish(answer))]
        if (answer.body.get("stream_options") or {}).get("include_usage"):
            final = {**self.envelope(answer), "choices": [], "usage": self.usage(answer)}
            events.append(_sse(final))
        return [*events, "data: [DONE]\n\n"]

    def failure(self, answer: Answer, fault: str) -> str:
        error = {"message": "fake failure", "type": "server_error", "code": "server_error"}
        return _sse({"error": error})

    def closing(self, body: Json) -> list[str]:
        return ["data: [DONE]\n\n"]


RESPONSES, CHAT_COMPLETIONS = Responses(), ChatCompletions()


class FakeOpenAI:
    """The server's state: what it received and how slow its slow faults are."""

    def __init__(self, slow_seconds: float = 5.0, drip_seconds: float = 0.05) -> None:
        self.slow_seconds = slow_seconds
        self.drip_seconds = drip_seconds
        self.expected_key: str | None = None
        self.base_url = ""
        self._ids = itertools.count(1)
        self.reset()
        self.app = Starlette(
            routes=[
                Route(RESPONSES.path, self.handler(RESPONSES), methods=["POST"]),
                Route(CHAT_COMPLETIONS.path, self.handler(CHAT_COMPLETIONS), methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/_fake/stats", self.stats, methods=["GET"]),
            ]
        )

    def reset(self) -> None:
        self.requests: list[Json] = []
        self.dialects: list[Dialect] = []
        self.authorizations: list[str] = []
        self.stored: set[str] = set()
        self.failed_once: set[str] = set()
        self.streams_opened = 0
        self.streams_closed = 0

    def turns_sent(self, index: int = -1) -> list[Json]:
        """The conversation request `index` carried, either API: instructions as a system turn."""
        return self.dialects[index].turns(self.requests[index])

    def cap_sent(self, index: int = -1) -> int | None:
        """The output-token cap request `index` carried, under its API's parameter name."""
        return self.dialects[index].limit(self.requests[index])

    @contextmanager
    def serve(self, port: int = 0) -> Iterator[FakeOpenAI]:
        """Serve on 127.0.0.1 in a background thread; `base_url` ends in /v1 like OpenAI's."""
        with serve_in_thread(self.app, port) as url:
            self.base_url = f"{url}/v1"
            yield self

    async def stats(self, request: Request) -> Response:
        counts = {
            "requests": len(self.requests),
            "streams_opened": self.streams_opened,
            "streams_closed": self.streams_closed,
        }
        return JSONResponse(counts)

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    def handler(self, dialect: Dialect) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            return await self.answer(request, dialect)

        return handle

    async def answer(self, request: Request, dialect: Dialect) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.dialects.append(dialect)
        authorization = request.headers.get("authorization", "")
        self.authorizations.append(authorization)
        if self.expected_key is not None and authorization != f"Bearer {self.expected_key}":
            return _error(401, "invalid_api_key")
        previous = body.get("previous_response_id")
        if dialect is RESPONSES and previous is not None and previous not in self.stored:
            return _error(400, "previous_response_not_found")
        turns = dialect.turns(body)
        users = [t for t in turns if t.get("role") == "user"]
        last = str(users[-1].get("content", "")) if users else ""
        answer = self.plan(dialect, body, turns, last)
        fault = FAULT.search(last)
        if fault and fault[1] in FAULTS:
            return await FAULTS[fault[1]](self, dialect, answer)
        return self.respond(dialect, answer)

    def plan(self, dialect: Dialect, body: Json, turns: list[Json], last: str) -> Answer:
        words = f"echo: {last}".split()
        limit = dialect.limit(body)
        whole = limit is None or len(words) <= limit
        words = words if whole else words[:limit]
        prompt = sum(len(str(t.get("content", "")).split()) for t in turns)
        response_id = f"resp_fake_{next(self._ids)}"
        if dialect is RESPONSES and body.get("store", True):
            self.stored.add(response_id)
        usage = {"input": prompt, "output": len(words), "reasoning": 0}
        return Answer(body, words, whole, usage, response_id)

    def respond(self, dialect: Dialect, answer: Answer, **stream: Any) -> Response:
        if answer.body.get("stream"):
            return self.stream(dialect, answer, **stream)
        return JSONResponse(dialect.reply(answer))

    def stream(
        self,
        dialect: Dialect,
        answer: Answer,
        *,
        delay: float = 0.0,
        first_delay: float = 0.0,
        cut_after: int | None = None,
        then: str | None = None,  # after the deltas, instead of the end: a fault's last event
    ) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            self.streams_opened += 1
            try:
                if first_delay:
                    await asyncio.sleep(first_delay)
                for event in dialect.start(answer):
                    yield event
                for index, word in enumerate(answer.words):
                    if index == cut_after:
                        raise ConnectionAbortedError("fault: connection dropped")
                    yield dialect.delta(answer, word if index == 0 else f" {word}")
                    if delay:
                        await asyncio.sleep(delay)
                if then is None:
                    for event in dialect.end(answer):
                        yield event
                else:
                    yield then
            finally:
                self.streams_closed += 1

        return StreamingResponse(events(), media_type="text/event-stream")


def _status(status: int, code: str | None = None) -> Fault:
    async def fault(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
        headers = {"Retry-After": "7"} if status == 429 else None
        return _error(status, code or ERROR_CODES[status], headers)

    return fault


async def _500_once(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
    message = json.dumps(dialect.turns(answer.body)[-1])
    if message in fake.failed_once:
        return fake.respond(dialect, answer)
    fake.failed_once.add(message)
    return _error(500, "server_error")


async def _slow(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
    await asyncio.sleep(fake.slow_seconds)
    return fake.respond(dialect, answer)


async def _stall(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
    if not answer.body.get("stream"):
        return await _slow(fake, dialect, answer)
    return fake.stream(dialect, answer, first_delay=fake.slow_seconds)


async def _drip(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
    answer.words *= 20
    answer.usage["output"] = len(answer.words)
    return fake.respond(dialect, answer, delay=fake.drip_seconds)


async def _cut(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
    answer.words = ["partial", "reply"]
    return fake.stream(dialect, answer, cut_after=1)  # a JSON request gets the cut stream too


async def _truncated(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
    closing = "".join(dialect.closing(answer.body))
    return fake.respond(dialect, answer, then=closing)


async def _malformed(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
    if not answer.body.get("stream"):
        return Response("{not json", media_type="application/json")
    answer.words = answer.words[:1]
    return fake.stream(dialect, answer, then="data: {not json\n\n")


def _in_band(kind: str) -> Fault:
    """A 200 that reports its failure inside: Responses' `failed` response or `error` event."""

    async def fault(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
        if answer.body.get("stream"):
            answer.words = answer.words[:1]
            return fake.stream(dialect, answer, then=dialect.failure(answer, kind))
        if dialect is RESPONSES and kind == "failed":
            return JSONResponse(RESPONSES.failed(answer))
        return _error(500, "server_error")

    return fault


async def _reasoning(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
    spent = dialect.limit(answer.body) or 1
    answer.words, answer.whole = [], False
    answer.usage.update(output=0, reasoning=spent)
    return fake.respond(dialect, answer)


async def _html(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
    return Response("<html>502</html>", media_type="text/html")


async def _drop(fake: FakeOpenAI, dialect: Dialect, answer: Answer) -> Response:
    answer.words = ["never sent"]
    return fake.stream(dialect, answer, cut_after=0)


Fault = Callable[[FakeOpenAI, Dialect, Answer], Awaitable[Response]]
FAULTS: dict[str, Fault] = {
    "401": _status(401),
    "429": _status(429),
    "quota": _status(429, "insufficient_quota"),
    "500": _status(500),
    "500-once": _500_once,
    "slow": _slow,
    "stall": _stall,
    "drip": _drip,
    "cut-stream": _cut,
    "truncated": _truncated,
    "malformed": _malformed,
    "drop": _drop,
    "html": _html,
    "failed": _in_band("failed"),
    "error": _in_band("error"),
    "reasoning": _reasoning,
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument("--drip-seconds", type=float, default=0.05)
    parser.add_argument("--expected-key", help="answer 401 to every other bearer token")
    args = parser.parse_args()
    fake = FakeOpenAI(slow_seconds=args.slow_seconds, drip_seconds=args.drip_seconds)
    fake.expected_key = args.expected_key
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
