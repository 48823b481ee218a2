"""The streaming load generator: cheaper than what it measures.

A raw asyncio protocol per stream: it writes one POST, timestamps the first `data:` line, counts
`data:` lines (per time window too, for the CPU-per-event curve), and knows a stream ended well
when the chunked body's terminator arrived with status 200 and no in-band error. It never parses
an event: an HTTP client that splits lines and decodes JSON costs about as much as the service.

    python bench/loadgen.py --port P --arrivals ramp:50:14 [--start-at T] [--stop-at T]
        [--share 0/1] [--path /v1/chat] [--body JSON] > result.json

Times are `time.monotonic()`, one clock for every process on the machine, so the bench lines
them up with the CPU it samples from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field

DATA = b"data:"
ERROR = b'data: {"error"'
# The end of a chunked body: the last, empty chunk.
TERMINATOR = b"\r\n0\r\n\r\n"
CARRY = max(len(DATA), len(ERROR), len(TERMINATOR))


@dataclass
class Stream:
    """One stream as the caller saw it (times in seconds, `time.monotonic()`)."""

    arrival: float  # when it was due to start (its scheduled arrival)
    sent: float | None = None  # when its connection was opened: first tokens count from here
    first_token: float | None = None  # when the first `data:` line arrived
    end: float | None = None
    events: int = 0
    status: int = 0
    error: str = ""  # empty: it ended well
    cut: bool = False  # we closed it on purpose (--stop-at)


@dataclass
class Result:
    streams: list[Stream] = field(default_factory=list)
    window: float = 0.5
    origin: float = 0.0  # window 0 starts here
    windows: list[int] = field(default_factory=list)  # `data:` lines received per window
    cpu_seconds: float = 0.0  # this process's own CPU time

    def as_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Result:
        raw = json.loads(text)
        raw["streams"] = [Stream(**stream) for stream in raw["streams"]]
        return cls(**raw)


def merged(results: list[Result]) -> Result:
    """The results of several client processes sharing one load, as one."""
    if not results:
        return Result()
    width = max(len(r.windows) for r in results)
    windows = [sum(r.windows[i] for r in results if i < len(r.windows)) for i in range(width)]
    return Result(
        streams=sorted((s for r in results for s in r.streams), key=lambda s: s.arrival),
        window=results[0].window,
        origin=results[0].origin,
        windows=windows,
        cpu_seconds=sum(r.cpu_seconds for r in results),
    )


def request_bytes(port: int, path: str, body: bytes) -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
        b"accept: text/event-stream\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
        % (path.encode(), port, len(body), body)
    )


class Opened:
    """Counts first tokens; `all` is set once every stream of the run has had its first."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.all = asyncio.Event()
        if not total:
            self.all.set()

    def one(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.all.set()


class StreamReader(asyncio.Protocol):
    def __init__(self, stream: Stream, request: bytes, result: Result, opened: Opened) -> None:
        self.opened = opened
        self.stream = stream
        self.request = request
        self.result = result
        self.tail = b""
        self.head = b""  # bytes until the status line is complete
        self.ended = False
        self.done = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.stream.status:
            self.head += data
            if b"\r\n" not in self.head:
                return
            parts = self.head.split(b" ", 2)
            self.stream.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
            data, self.head = self.head, b""
        seen = self.tail + data
        # A marker split across two reads is found once: `tail` holds less than a marker.
        count = seen.count(DATA)
        if count:
            if self.stream.first_token is None:
                self.stream.first_token = now
                self.opened.one()
            self.stream.events += count
            index = int((now - self.result.origin) / self.result.window)
            windows = self.result.windows
            if index >= len(windows):
                windows.extend([0] * (index + 1 - len(windows)))
            windows[index] += count
        if ERROR in seen and not self.stream.error:
            self.stream.error = "error event"
        self.ended = seen.endswith(TERMINATOR)
        if self.ended and self.transport is not None:  # the body is complete: no need to wait
            self.transport.close()  # for the server to close its side
        cut = max(len(seen) - CARRY + 1, 0)
        if count:  # a counted marker never counts twice: keep only what follows the last one
            cut = max(cut, seen.rfind(DATA) + len(DATA))
        self.tail = seen[cut:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream.end = time.monotonic()
        if not self.stream.error and not self.stream.cut:
            if self.stream.status != 200:
                self.stream.error = f"status {self.stream.status}"
            elif not self.ended:
                self.stream.error = f"cut after {self.stream.events} events"
        if not self.done.done():
            self.done.set_result(None)

    def cut(self) -> None:
        self.stream.cut = True
        if self.transport is not None:
            self.transport.abort()
        elif not self.done.done():  # not connected yet: it never will be
            self.stream.end = time.monotonic()
            self.done.set_result(None)


async def one_stream(port: int, request: bytes, reader: StreamReader) -> None:
    loop = asyncio.get_running_loop()
    stream = reader.stream
    delay = stream.arrival - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    if stream.cut:
        return
    stream.sent = time.monotonic()
    try:
        await loop.create_connection(lambda: reader, "127.0.0.1", port)
    except OSError as error:
        stream.end = time.monotonic()
        stream.error = f"connect: {error.strerror or error}"
        reader.opened.one()  # it never will be open: holding on for it would only wait
        return
    await reader.done


def arrivals(spec: str, start: float, share: tuple[int, int]) -> list[float]:
    """`ramp:RATE:SECONDS` (evenly spaced) or `burst:COUNT` (all at `start`); this process
    takes every `share[1]`-th arrival, starting at `share[0]`."""
    kind, *numbers = spec.split(":")
    if kind == "ramp" and len(numbers) == 2:
        rate, seconds = float(numbers[0]), float(numbers[1])
        times = [start + i / rate for i in range(round(rate * seconds))]
    elif kind == "burst" and len(numbers) == 1:
        times = [start] * int(numbers[0])
    else:
        raise ValueError(f"arrivals are ramp:RATE:SECONDS or burst:COUNT, not {spec!r}")
    index, of = share
    return times[index::of]


async def run(
    port: int,
    path: str,
    body: bytes,
    times: list[float],
    origin: float,
    stop_at: float | None = None,
    window: float = 0.5,
) -> Result:
    """Every stream to its end; with `stop_at`, the streams are held open until each has had
    its first token (or `stop_at` passed), then all cut at once: the moment the most are open."""
    result = Result(window=window, origin=origin)
    request = request_bytes(port, path, body)
    result.streams = [Stream(arrival=at) for at in times]
    opened = Opened(len(times))
    readers = [StreamReader(stream, request, result, opened) for stream in result.streams]
    streams = asyncio.gather(*(one_stream(port, request, reader) for reader in readers))
    if stop_at is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(opened.all.wait(), max(stop_at - time.monotonic(), 0))
        for reader in readers:
            if not reader.done.done():
                reader.cut()
    await streams
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat")
    parser.add_argument("--body", default='{"message": "hello from the benchmark", "stream": true}')
    parser.add_argument("--arrivals", default="ramp:50:14")
    parser.add_argument("--start-at", type=float, help="time.monotonic() of the first arrival")
    parser.add_argument(
        "--stop-at", type=float,
        help="hold streams open until all have had a first token, at most until this time; "
        "then cut them all",
    )  # fmt: skip
    parser.add_argument("--share", default="0/1", help="K/N: this process's part of the load")
    parser.add_argument("--window", type=float, default=0.5, help="seconds per event count")
    args = parser.parse_args(argv)
    start = args.start_at if args.start_at is not None else time.monotonic() + 0.2
    index, of = (int(n) for n in args.share.split("/"))
    times = arrivals(args.arrivals, start, (index, of))
    cpu_before = time.process_time()  # the run's own CPU, not the interpreter's start-up
    try:
        import uvloop  # the cheaper loop, when the venv has it

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run(args.port, args.path, args.body.encode(), times, start, args.stop_at,
                        args.window))  # fmt: skip
    result.cpu_seconds = time.process_time() - cpu_before
    sys.stdout.write(result.as_json())


if __name__ == "__main__":
    main()
