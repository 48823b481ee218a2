"""Hostile trace headers never break a request: a corpus of malformed `traceparent` and
`X-Cloud-Trace-Context` values (over-long, wrong lengths, non-hex, Unicode, empty, repeated)
sent to every route, through the TestClient and through a real uvicorn process on 127.0.0.1.
No answer is a 500, nothing is logged as a crash, and /health stays 200."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from app.core.logging import trace_from_headers
from tests.conftest import {{ "CLIENT_KEY, " if cookiecutter.client_auth == "api-key" else "" }}Env, MakeClient
from tests.routes import Probe, walk

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TRACEPARENTS = [
    f"00-{TRACE}-{'1' * 5000}-01",  # a 5,000-digit span
    "",
    " ",
    f"00-{TRACE}-{SPAN}",  # no flags
    f"00-{TRACE[:31]}-{SPAN}-01",  # a trace id one digit short
    f"00-{TRACE}0-{SPAN}-01",  # one digit long
    f"00-{TRACE.upper()}-{SPAN.upper()}-01",  # upper case is not W3C
    f"00-{'z' * 32}-{SPAN}-01",  # not hex
    f"00-{'0' * 32}-{SPAN}-01",  # the all-zero (invalid) trace id
    f"00-{TRACE}-{'0' * 16}-01",  # the all-zero span id
    f"ff-{TRACE}-{SPAN}-01",
    f"00-{TRACE[:30]}ü1-{SPAN}-01",  # Unicode
    f"00-{TRACE}-{SPAN}-01-{'x' * 3000}",
    "-" * 5000,
]
CLOUD_TRACES = [
    f"{TRACE}/{'9' * 5000};o=1",  # the 5,000-digit span that once made /health a 500
    f"{TRACE}/{'1' * 25}",
    f"{TRACE}/{2**64}",  # one past the largest span
    f"{TRACE}/-1",
    f"{TRACE}/abc;o=1",
    "",
    TRACE[:31],
    f"{TRACE}ü/1",
    f"/{'1' * 5000}",
    f"{TRACE}/1;o={'1' * 5000}",
    "ü" * 3000,
    f"{'0' * 32}/1",
]
# Each malformed value alone, then repeated headers: a valid one next to a malformed one, and
# many copies of the worst.
CORPUS: list[list[tuple[str, str]]] = [
    *([("traceparent", value)] for value in TRACEPARENTS),
    *([("x-cloud-trace-context", value)] for value in CLOUD_TRACES),
    [("traceparent", f"00-{TRACE}-{SPAN}-01"), ("traceparent", TRACEPARENTS[0])],
    [("x-cloud-trace-context", f"{TRACE}/1"), ("x-cloud-trace-context", CLOUD_TRACES[0])],
    [("traceparent", TRACEPARENTS[0]), ("x-cloud-trace-context", CLOUD_TRACES[0])] * 20,
]
AUTH = {{ '[("x-api-key", CLIENT_KEY)]' if cookiecutter.client_auth == "api-key" else "[]" }}


def wait_until_ready(status: Callable[[], int]) -> None:
    """Probe once everything is loaded: a 503 "starting" is an honest answer, not a failure."""
    deadline = time.monotonic() + 30
    while status() != 200:
        assert time.monotonic() < deadline, "/ready did not answer 200 in 30 s"
        time.sleep(0.05)


def probes(app: FastAPI) -> list[Probe]:
    """Every HTTP route of the app, and a path no route serves."""
    found = [p for p in walk(app.routes) if p.method not in ("HEAD", "WEBSOCKET")]
    return [*found, Probe("GET", "/no-such-path")]


def test_the_corpus_is_large_and_every_value_parses_to_a_trace_or_none() -> None:
    assert len(TRACEPARENTS) + len(CLOUD_TRACES) >= 20
    for value in TRACEPARENTS:
        assert trace_from_headers(value, None) is None
    for value in CLOUD_TRACES:
        parsed = trace_from_headers(None, value)
        assert parsed is None or (len(parsed[0]) == 32 and (parsed[1] or "0" * 16).isalnum())


def test_no_hostile_trace_header_gives_a_500_on_any_route(
    make_client: MakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(RATE_LIMIT_PER_MINUTE="1000000", DOCS_ENABLED="1")
    wait_until_ready(lambda: client.get("/ready").status_code)
    statuses: dict[tuple[str, int], int] = {}
    for probe in probes(client.app):  # type: ignore[arg-type]
        for number, headers in enumerate(CORPUS):
            raw = [(name.encode(), value.encode()) for name, value in [*headers, *AUTH]]
            response = client.request(probe.method, probe.path, headers=raw, json={"message": "hi"})
            statuses[(probe.path, number)] = response.status_code
    assert {key: status for key, status in statuses.items() if status >= 500} == {}
    assert [s for (path, _), s in statuses.items() if path == "/health"] == [200] * len(CORPUS)
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["message"] for e in logged if "stack_trace" in e] == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_request(port: int, method: str, path: str, headers: list[tuple[str, str]]) -> int:
    """The status of one HTTP/1.1 request written byte for byte (UTF-8 header values and
    repeated headers included, as no client library sends them)."""
    body = b'{"message": "hi"}' if method == "POST" else b""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in [*headers, *AUTH]]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        reply = b""
        while b"\r\n" not in reply and (chunk := sock.recv(4096)):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


@pytest.fixture
def service(env: Env, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The service as uvicorn serves it in production, on 127.0.0.1, logging to a file."""
    env(RATE_LIMIT_PER_MINUTE="1000000")
    port, log = free_port(), tmp_path / "service.log"
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    with log.open("wb") as out:
        process = subprocess.Popen(  # our own interpreter, fixed arguments
            [*argv, "--port", str(port)], env=dict(os.environ), stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if raw_request(port, "GET", "/health", []) == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the service did not answer /health in 30 s"
            time.sleep(0.05)
        yield port, log
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_no_hostile_trace_header_gives_a_500_from_a_real_uvicorn(
    service: tuple[int, Path], make_client: MakeClient
) -> None:
    port, log = service
    wait_until_ready(lambda: raw_request(port, "GET", "/ready", []))
    statuses = {}
    for probe in probes(make_client().app):  # type: ignore[arg-type]
        for number, headers in enumerate(CORPUS):
            statuses[(probe.path, number)] = raw_request(port, probe.method, probe.path, headers)
    assert {key: status for key, status in statuses.items() if status >= 500} == {}
    assert [s for (path, _), s in statuses.items() if path == "/health"] == [200] * len(CORPUS)
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert [e["message"] for e in entries if "stack_trace" in e] == []


@pytest.mark.parametrize("length", ["9" * 5000, "0" * 5000 + "2"], ids=["huge", "zero-padded"])
def test_an_absurd_content_length_is_refused_or_read_never_a_500(
    make_client: MakeClient, length: str
) -> None:
    """int() refuses over 4,300 digits: the body cap must not get that far."""
    client = make_client()
    headers = [(b"content-length", length.encode()), (b"content-type", b"application/json")]
    headers += [(name.encode(), value.encode()) for name, value in AUTH]
    response = client.post("/v1/chat", content=b"{}", headers=headers)
    assert response.status_code == (413 if length.startswith("9") else 422)
