"""A paced OpenAI stand-in for the streaming benchmarks, cheap enough not to be what is measured.

Speaks both streaming APIs the service can use, and answers their non-streaming form at once:

    POST /v1/chat/completions   Chat Completions: `data: {chunk}` lines, usage chunk, [DONE]
    POST /v1/responses          Responses: `event:`/`data:` pairs, from response.created to
                                response.completed (which carries usage)
    GET  /v1/models             the readiness probe

A stream sends its first text after `first_token` seconds, then one more every `interval`,
`chunks` in all, then its closing events. Plain asyncio protocol and timers, every event encoded
once at start-up: one stream costs the upstream a write per event, a few microseconds.

    python bench/paced_upstream.py --port 8081 [--first-token 0.3 --interval 0.2 --chunks 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

MODEL = "gpt-4o-mini"
HEAD_END = b"\r\n\r\n"
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


@dataclass(frozen=True)
class Pace:
    first_token: float = 0.3
    interval: float = 0.2
    chunks: int = 40

    @property
    def stream_seconds(self) -> float:
        """How long one stream stays open, from the request to its last event."""
        return self.first_token + self.interval * (self.chunks - 1)


def words(chunks: int) -> list[str]:
    return [f"tok{index}" if index == 0 else f" tok{index}" for index in range(chunks)]


def usage(chunks: int) -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks}


def sse(data: object, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def chat_events(chunks: int) -> tuple[list[bytes], list[bytes]]:
    """(one event per text chunk, the closing events) of a Chat Completions stream."""
    envelope = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0}
    envelope["model"] = MODEL

    def chunk(delta: dict[str, str], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse({**envelope, "choices": [choice]})

    texts = [chunk({"role": "assistant", "content": w} if i == 0 else {"content": w}, None)
             for i, w in enumerate(words(chunks))]  # fmt: skip
    closing = [
        chunk({}, "stop"),
        sse({**envelope, "choices": [], "usage": usage(chunks)}),
        b"data: [DONE]\n\n",
    ]
    return texts, closing


def response_object(status: str, text: str, chunks: int) -> dict[str, object]:
    done = status == "completed"
    message = {
        "id": "msg_bench", "type": "message", "role": "assistant", "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": []}] if done else [],
    }  # fmt: skip
    tokens = {
        "input_tokens": 8, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": chunks, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 8 + chunks,
    }  # fmt: skip
    return {
        "id": "resp_bench", "object": "response", "created_at": 0, "model": MODEL,
        "status": status, "error": None, "incomplete_details": None,
        "output": [message] if done else [], "usage": tokens if done else None,
    }  # fmt: skip


def responses_events(chunks: int) -> tuple[list[bytes], list[bytes]]:
    """(one event per text chunk, the closing events) of a Responses stream; the opening
    events go out with the first text."""
    text = "".join(words(chunks))
    item = {"item_id": "msg_bench", "output_index": 0, "content_index": 0}
    seq = iter(range(1_000_000))

    def event(kind: str, **fields: object) -> bytes:
        return sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

    opening = (
        event("response.created", response=response_object("in_progress", "", chunks))
        + event("response.in_progress", response=response_object("in_progress", "", chunks))
        + event("response.output_item.added", output_index=0, item={
            "id": "msg_bench", "type": "message", "role": "assistant", "status": "in_progress",
            "content": []})
        + event("response.content_part.added", **item,
                part={"type": "output_text", "text": "", "annotations": []})
    )  # fmt: skip
    texts = [event("response.output_text.delta", **item, delta=w, logprobs=[])
             for w in words(chunks)]  # fmt: skip
    texts[0] = opening + texts[0]
    closing = [
        event("response.output_text.done", **item, text=text, logprobs=[])
        + event("response.output_item.done", output_index=0,
                item=response_object("completed", text, chunks)["output"][0])  # type: ignore[index]
        + event("response.completed", response=response_object("completed", text, chunks))
    ]  # fmt: skip
    return texts, closing


def json_reply(api: str, chunks: int) -> bytes:
    text = "".join(words(chunks))
    if api == "responses":
        body: dict[str, object] = response_object("completed", text, chunks)
    else:
        message = {"role": "assistant", "content": text}
        body = {
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage(chunks),
        }  # fmt: skip
    return response(200, json.dumps(body).encode())


def response(status: int, body: bytes, kind: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 404: b"Not Found", 400: b"Bad Request"}[status]
    return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        reason,
        kind,
        len(body),
        body,
    )


def framed(event: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(event), event)


class Upstream:
    """The encoded events, shared by every connection."""

    def __init__(self, pace: Pace) -> None:
        self.pace = pace
        self.streams = {
            b"/v1/chat/completions": [framed(e) for e in _joined(chat_events(pace.chunks))],
            b"/v1/responses": [framed(e) for e in _joined(responses_events(pace.chunks))],
        }
        self.replies = {
            b"/v1/chat/completions": json_reply("chat", pace.chunks),
            b"/v1/responses": json_reply("responses", pace.chunks),
        }
        self.models = response(200, b'{"object":"list","data":[{"id":"%s"}]}' % MODEL.encode())


def _joined(events: tuple[list[bytes], list[bytes]]) -> list[bytes]:
    """The text events, the last of them followed by the closing ones: a write per chunk."""
    texts, closing = events
    return [*texts[:-1], texts[-1] + b"".join(closing)]


class Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, as the openai client's pool expects; one request at a time."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:  # the caller went away mid-stream: stop pacing it
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.timer is None and self.transport and (request := self._request()):
            self._answer(*request)

    def _request(self) -> tuple[bytes, bytes, bytes, bool] | None:
        """(method, path, body, close after it) of the next complete request, or None."""
        end = self.buffer.find(HEAD_END)
        if end < 0:
            return None
        head = self.buffer[:end].split(b"\r\n")
        method, path, _ = head[0].split(b" ", 2)
        length, close = 0, False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        start = end + len(HEAD_END)
        if len(self.buffer) < start + length:
            return None
        body = self.buffer[start : start + length]
        self.buffer = self.buffer[start + length :]
        return method, path.split(b"?")[0], body, close

    def _answer(self, method: bytes, path: bytes, body: bytes, close: bool) -> None:
        assert self.transport is not None
        self.close_after = close
        if method == b"POST" and path in self.upstream.streams:
            if json.loads(body or b"{}").get("stream"):
                self.transport.write(STREAM_HEAD)
                self._send(self.upstream.streams[path], 0, self.upstream.pace.first_token)
                return
            self.transport.write(self.upstream.replies[path])
        elif method == b"GET" and path == b"/v1/models":
            self.transport.write(self.upstream.models)
        else:
            self.transport.write(response(404, b'{"error":{"message":"not found"}}'))
        self._done()

    def _done(self) -> None:
        """One response sent: close if the caller asked, else serve what it pipelined."""
        assert self.transport is not None
        if self.close_after:
            self.transport.close()
        elif self.buffer:
            self.data_received(b"")

    def _send(self, events: list[bytes], index: int, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(delay, self._next, events, index)

    def _next(self, events: list[bytes], index: int) -> None:
        self.timer = None
        if self.transport is None:
            return
        self.transport.write(events[index])
        if index + 1 < len(events):
            self._send(events, index + 1, self.upstream.pace.interval)
        else:
            self.transport.write(b"0\r\n\r\n")
            self._done()


def install_uvloop() -> Callable[..., object]:
    """uvloop when the venv has it (the service's does): the same loop the apps run on."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


async def serve(port: int, pace: Pace) -> None:
    upstream = Upstream(pace)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(upstream), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first-token", type=float, default=Pace.first_token, help="seconds")
    parser.add_argument("--interval", type=float, default=Pace.interval, help="seconds")
    parser.add_argument("--chunks", type=int, default=Pace.chunks)
    args = parser.parse_args(argv)
    pace = Pace(args.first_token, args.interval, args.chunks)
    install_uvloop()(serve(args.port, pace))


if __name__ == "__main__":
    main()
