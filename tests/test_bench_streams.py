"""The streaming benchmark's parts (bench/): the socket load generator against real local servers
(the paced upstream, and servers that fail), the paced upstream's events, and the arithmetic
that turns a run into rows. Nothing here times anything or asserts a speed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import loadgen
from bench.paced_upstream import Pace, chat_events, responses_events
from bench.procstat import parse_cpu_seconds, parse_peak_rss_mib
from bench.servers import Probe, free_port, serving
from bench.streaming import Load, cpu_at, streams_per_vcpu

BENCH = Path(__file__).resolve().parent.parent / "bench"
FAST = Pace(first_token=0.05, interval=0.01, chunks=5)


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """bench/paced_upstream.py as the bench runs it, at a fast pace."""
    port = free_port()
    argv = [sys.executable, str(BENCH / "paced_upstream.py"), "--port", str(port)]
    argv += ["--first-token", "0.05", "--interval", "0.01", "--chunks", "5"]
    with serving(argv, Probe(port, "/v1/models"), cwd=BENCH, env={}):
        yield port


def load(port: int, path: str, count: int = 3, stop_after: float | None = None) -> loadgen.Result:
    start = time.monotonic() + 0.05
    times = [start] * count
    stop_at = start + stop_after if stop_after is not None else None
    body = b'{"stream": true, "model": "m"}'
    return asyncio.run(loadgen.run(port, path, body, times, start, stop_at))


def data_lines(events: list[bytes]) -> list[dict[str, object]]:
    lines = b"".join(events).decode().splitlines()
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def test_paced_chat_stream_sends_each_chunk_then_finish_usage_and_done() -> None:
    """Chat Completions: one delta per chunk, a finish_reason, a usage chunk, then [DONE]."""
    texts, closing = chat_events(3)
    chunks = data_lines(texts + closing)
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:3]] == [  # type: ignore[index]
        "tok0", " tok1", " tok2",
    ]  # fmt: skip
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
    assert chunks[4]["usage"]["completion_tokens"] == 3  # type: ignore[index]
    assert closing[-1] == b"data: [DONE]\n\n"


def test_paced_responses_stream_opens_deltas_and_completes_with_usage() -> None:
    """Responses: created → deltas (one per chunk, each named by its `event:` line) → completed,
    whose response carries the whole text and the usage; sequence numbers count up."""
    texts, closing = responses_events(3)
    events = data_lines(texts + closing)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created"
    assert kinds.count("response.output_text.delta") == 3
    assert kinds[-1] == "response.completed"
    completed = events[-1]["response"]
    assert completed["usage"]["output_tokens"] == 3  # type: ignore[index]
    assert completed["output"][0]["content"][0]["text"] == "tok0 tok1 tok2"  # type: ignore[index]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert b"event: response.output_text.delta\ndata: " in b"".join(texts)


@pytest.mark.parametrize(
    ("path", "events"),
    [("/v1/chat/completions", 5 + 3), ("/v1/responses", 4 + 5 + 3)],
)
def test_load_generator_counts_every_data_line_of_a_paced_stream(
    upstream: int, path: str, events: int
) -> None:
    """Every stream ends well: status 200, the chunked body's terminator, all its `data:` lines
    counted (Chat: 5 chunks + finish, usage, [DONE]; Responses: 4 opening events, 5 deltas, 3
    closing), and a first token no earlier than the upstream's own delay."""
    result = load(upstream, path)
    assert [(s.status, s.error, s.events) for s in result.streams] == [(200, "", events)] * 3
    for stream in result.streams:
        assert stream.sent is not None
        assert stream.first_token is not None
        assert stream.first_token - stream.sent >= FAST.first_token
    assert sum(result.windows) == 3 * events


def test_load_generator_reports_a_non_200_answer(upstream: int) -> None:
    result = load(upstream, "/v1/nothing-here", count=1)
    assert result.streams[0].error == "status 404"


def test_load_generator_holds_streams_open_until_each_has_a_first_token_then_cuts_them() -> None:
    """With --stop-at, the streams are cut together once all are open: cut, not failed."""
    port = free_port()
    argv = [sys.executable, str(BENCH / "paced_upstream.py"), "--port", str(port)]
    argv += ["--first-token", "0.05", "--interval", "30", "--chunks", "40"]
    with serving(argv, Probe(port, "/v1/models"), cwd=BENCH, env={}):
        result = load(port, "/v1/chat/completions", count=4, stop_after=60)
    assert [(s.cut, s.error, s.events) for s in result.streams] == [(True, "", 1)] * 4


async def serve_bytes(answer: bytes) -> tuple[asyncio.Server, int]:
    """A server that reads a request, writes `answer` and closes the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.parametrize(
    ("answer", "error", "events"),
    [
        (HEAD + chunk(b'data: {"delta": "a"}\n\n'), "cut after 1 events", 1),
        (HEAD + chunk(b'data: {"error": {"code": "x"}}\n\n') + b"0\r\n\r\n", "error event", 1),
        (HEAD + chunk(b'data: {"delta": "a"}\n\n') + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n",
         "", 2),
    ],
    ids=["cut-mid-stream", "in-band-error", "complete"],
)  # fmt: skip
def test_load_generator_tells_a_cut_or_failed_stream_from_a_complete_one(
    answer: bytes, error: str, events: int
) -> None:
    """A stream without the chunked terminator was cut; an `{"error"` event is a failure."""

    async def scenario() -> loadgen.Stream:
        server, port = await serve_bytes(answer)
        async with server:
            start = time.monotonic()
            result = await loadgen.run(port, "/v1/chat", b"{}", [start], start)
        return result.streams[0]

    stream = asyncio.run(scenario())
    assert (stream.status, stream.error, stream.events) == (200, error, events)


def test_load_generator_counts_a_marker_split_across_reads_once() -> None:
    """TCP may split `data:` (or the terminator) anywhere: each line is counted exactly once."""

    async def feed() -> loadgen.Stream:
        stream = loadgen.Stream(arrival=0.0, sent=0.0)
        result = loadgen.Result(origin=time.monotonic())
        reader = loadgen.StreamReader(stream, b"", result, loadgen.Opened(1))
        body = HEAD + chunk(b"data: a\n\ndata: b\n\n") + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        for index in range(0, len(body), 3):
            reader.data_received(body[index : index + 3])
        reader.connection_lost(None)
        return stream

    stream = asyncio.run(feed())
    assert (stream.events, stream.error, stream.status) == (3, "", 200)


def test_arrivals_ramp_evenly_burst_at_once_and_split_between_clients() -> None:
    assert loadgen.arrivals("ramp:4:1", 10.0, (0, 1)) == [10.0, 10.25, 10.5, 10.75]
    assert loadgen.arrivals("ramp:4:1", 10.0, (1, 2)) == [10.25, 10.75]
    assert loadgen.arrivals("burst:3", 5.0, (0, 1)) == [5.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="ramp:RATE:SECONDS or burst:COUNT"):
        loadgen.arrivals("steady:4", 0.0, (0, 1))


def test_results_of_several_clients_merge_into_one_load() -> None:
    """Streams in arrival order, event windows and CPU added up."""
    a = loadgen.Result([loadgen.Stream(arrival=2.0)], 0.5, 1.0, [1, 2], 0.25)
    b = loadgen.Result([loadgen.Stream(arrival=1.0)], 0.5, 1.0, [3, 4, 5], 0.5)
    merged = loadgen.merged([a, b])
    assert [s.arrival for s in merged.streams] == [1.0, 2.0]
    assert (merged.windows, merged.cpu_seconds) == ([4, 6, 5], 0.75)
    assert loadgen.Result.from_json(merged.as_json()) == merged


def test_cpu_of_a_process_is_read_past_a_name_with_spaces_and_parentheses() -> None:
    """utime and stime are fields 14 and 15, counted after the name's closing parenthesis."""
    stat = "42 (my (odd) name) S 1 42 42 0 -1 4194304 0 0 0 0 250 150 0 0 20 0 1 0 9 0 0"
    ticks = __import__("os").sysconf("SC_CLK_TCK")
    assert parse_cpu_seconds(stat) == pytest.approx(400 / ticks)


def test_peak_rss_is_the_high_water_mark_in_mib() -> None:
    status = "Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t  104448 kB\nVmRSS:\t  90000 kB\n"
    assert parse_peak_rss_mib(status) == pytest.approx(102.0)
    with pytest.raises(ValueError, match="VmHWM"):
        parse_peak_rss_mib("Name:\tpython\n")


def test_cpu_between_samples_is_interpolated() -> None:
    samples = [(0.0, 1.0), (1.0, 2.0), (2.0, 4.0)]
    assert cpu_at(samples, 1.5) == pytest.approx(3.0)
    assert cpu_at(samples, 5.0) == 4.0  # past the last sample: the last reading
    assert cpu_at(samples, -1.0) == 1.0


def test_cpu_per_event_is_taken_over_the_ramps_steady_state_only() -> None:
    """At the default pace a stream lasts 8.1 s: windows 17-23 (8.5 s to 12 s) are the steady
    state. 0.4 CPU-s a second over 3.5 s for 7,000 events is 200 µs an event; the busier
    filling-up windows before are left out."""
    windows = [5000] * 17 + [1000] * 7 + [5000] * 4
    samples = [(t / 10, 0.4 * t / 10) for t in range(0, 141)]
    run = Load("service", loadgen.Result([], 0.5, 0.0, windows), 9.0, 0.0, 0.0, samples, 0.0)
    assert run.steady_cpu_per_event_us(Pace(), 12.0) == pytest.approx(200.0)


def test_streams_per_vcpu_is_the_cpu_target_over_chunks_per_second_times_cpu_per_event() -> None:
    """200 µs an event at 50 events/s is 1 % of a vCPU per stream: 70 streams at 70 %."""
    windows = [0] * 17 + [1000] * 7
    samples = [(0.0, 0.0), (8.5, 0.0), (12.0, 1.4)]
    run = Load("service", loadgen.Result([], 0.5, 0.0, windows), 1.4, 0.0, 0.0, samples, 0.0)
    assert streams_per_vcpu(run) == pytest.approx(70.0)


def test_steady_streams_are_those_that_arrived_once_the_ramp_was_full() -> None:
    """Arrivals before one stream's length has passed found the process still filling up."""
    pace = Pace(first_token=0.3, interval=0.2, chunks=3)  # a stream lasts 0.7 s
    streams = [loadgen.Stream(arrival=t, sent=t, first_token=t + 0.35, end=t + 0.7)
               for t in (0.0, 0.5, 0.7, 1.5, 2.5)]  # fmt: skip
    run = Load("service", loadgen.Result(streams), 1.0, 0.0, 0.0, [], 0.0)
    steady = run.steady(pace, seconds=2.0)
    assert [s.arrival for s in steady] == [0.7, 1.5]
    assert run.added_ms(steady[0], pace) == pytest.approx(50.0)


def test_cpu_curve_divides_each_window_cpu_by_its_events() -> None:
    """Window 0 (100 events, 0.02 s CPU) is 200 µs an event, with the 2 streams open then;
    a window with too few events to mean anything is left out."""
    streams = [loadgen.Stream(arrival=0.0, sent=0.0, end=0.8) for _ in range(2)]
    result = loadgen.Result(streams, window=0.5, origin=0.0, windows=[100, 3])
    run = Load("service", result, 0.03, 0.0, 0.0, [(0.0, 0.0), (0.5, 0.02), (1.0, 0.03)], 0.0)
    curve = run.cpu_curve()
    assert len(curve) == 1
    assert curve[0] == (2, pytest.approx(200.0))


def test_load_generator_runs_as_a_command_and_prints_its_result(upstream: int) -> None:
    """As the bench runs it: a process, JSON on stdout, its own CPU time included."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "loadgen.py"), "--port", str(upstream), "--path",
         "/v1/chat/completions", "--body", '{"stream": true}', "--arrivals", "burst:2"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result = loadgen.Result.from_json(done.stdout)
    assert [s.error for s in result.streams] == ["", ""]
    assert result.cpu_seconds > 0
