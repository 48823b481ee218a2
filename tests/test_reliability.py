"""The baked service under load while its upstream misbehaves, hung-up clients, and SIGTERM.

A real uvicorn process (the Dockerfile's CMD, see tests/processes.py) in front of the service's
own fake upstream run as a process; everything on 127.0.0.1, every loop bounded. The figures go
to .cache/reliability.json for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.load import FAULT_SHARE, disconnect_mid_stream, mix, run_load
from tests.processes import (
    Process,
    Processes,
    Service,
    crashes,
    get,
    log_entries,
    service_env,
    wait_for,
)
from tests.reliability_report import record

pytestmark = pytest.mark.slow

REQUESTS, WARM_UP, CONCURRENCY = 2000, 400, 64
DISCONNECTS = 200
DRAIN_SECONDS, SIGKILL_AFTER = 8, 10  # uvicorn's --timeout-graceful-shutdown; Cloud Run's kill


@pytest.fixture(scope="module")
def service(started: Processes, upstream: Process) -> Service:
    # 2 s: the whole upstream call, on two shared cores under 64 concurrent requests; the fake's
    # slow fault (3 s) still outlasts it.
    service = started.service("service-load", **service_env(upstream, timeout=2))
    wait_for(f"{service.url}/ready", 200)
    return service


def open_streams(upstream: Process) -> tuple[int, int]:
    stats = get(f"{upstream.url}/_fake/stats")[1]
    return stats["streams_opened"], stats["streams_opened"] - stats["streams_closed"]


def test_load_with_upstream_faults_gets_the_promised_answer_every_time(service: Service) -> None:
    """2,000 requests at 64 concurrent, 30% upstream faults: every answer has the contract's
    status and JSON error body, no 500 or traceback, /health answers throughout, the process
    stays up, and its memory after the run is within 10% of its memory after warm-up."""
    warm = run_load(service.url, mix(WARM_UP, seed=1), CONCURRENCY)
    assert warm.problems == [], warm.problems[:10]
    rss_warm = service.rss_kib()
    result = run_load(service.url, mix(REQUESTS, seed=2), CONCURRENCY)
    rss_after = service.rss_kib()
    found = crashes(service.log)
    record(
        "load",
        result.as_report()
        | {
            "concurrency": CONCURRENCY,
            "fault_share": FAULT_SHARE,
            "crashes": len(found) + (0 if service.alive() else 1),
            "rss_after_warm_up_kib": rss_warm,
            "rss_after_run_kib": rss_after,
            "rss_change_percent": round(100 * (rss_after - rss_warm) / rss_warm, 1),
        },
    )
    assert result.sent == REQUESTS
    assert result.problems == [], result.problems[:10]
    assert 500 not in result.by_status
    assert found == []
    assert service.alive()
    assert result.health_probes > 0
    assert result.health_failures == []
    assert rss_after <= rss_warm * 1.10


def test_clients_that_hang_up_mid_stream_close_every_upstream_stream(
    service: Service, upstream: Process
) -> None:
    """200 clients read one event and hang up: the fake upstream sees each of its 200 streams
    closed long before it would have ended, and the service still answers afterwards."""
    opened_before, still_open = open_streams(upstream)
    assert still_open == 0
    got_an_event = disconnect_mid_stream(service.url, DISCONNECTS, 50, "fault:drip")
    deadline = time.monotonic() + 10  # a drip stream left open would run for 20 s
    while (streams := open_streams(upstream))[1] and time.monotonic() < deadline:
        time.sleep(0.1)
    opened, still_open = streams
    record(
        "disconnects",
        {
            "requests": DISCONNECTS,
            "faults_injected": DISCONNECTS,  # each client hangs up mid-stream
            "by_status": {"200": got_an_event},  # answered, streaming, when the client left
            "upstream_streams_opened": opened - opened_before,
            "upstream_streams_left_open": still_open,
            "crashes": len(crashes(service.log)),
        },
    )
    assert got_an_event == DISCONNECTS
    assert opened - opened_before == DISCONNECTS
    assert still_open == 0
    assert crashes(service.log) == []
    assert get(f"{service.url}/ready") == (200, {"status": "ready"})


async def _in_flight(url: str, slow: int, long: int) -> list[dict[str, Any]]:
    """`slow` JSON requests that end within the drain, `long` streams that outlast it."""

    async def one(client: httpx.AsyncClient, message: str, stream: bool) -> dict[str, Any]:
        outcome: dict[str, Any] = {"stream": stream, "status": None, "done": False}
        try:
            payload = {"message": message, "stream": stream}
            async with client.stream("POST", "/v1/chat", json=payload) as response:
                outcome["status"] = response.status_code
                async for chunk in response.aiter_text():
                    outcome["last_byte_at"] = time.monotonic()
                    outcome["done"] |= '"reply"' in chunk or "[DONE]" in chunk
        except httpx.HTTPError as error:
            outcome["error"] = type(error).__name__
        outcome["ended_at"] = time.monotonic()
        return outcome

    limits = httpx.Limits(max_connections=slow + long)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        calls = [one(client, "fault:slow", False) for _ in range(slow)]
        calls += [one(client, "fault:drip", True) for _ in range(long)]
        return list(await asyncio.gather(*calls))


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_during_load_drains_then_exits_0_and_refuses_new_connections(
    started: Processes, upstream: Process
) -> None:
    """SIGTERM with 24 requests in flight that end within the drain and 4 streams that would
    not: the 24 finish with 200, the 4 are cut no sooner than 8 s after the signal, new
    connections are refused from the signal on, and the process exits 0 within 10 s."""
    service = started.service("service-sigterm", **service_env(upstream, timeout=30))
    wait_for(f"{service.url}/ready", 200)
    slow, long = 24, 4
    requests_before = get(f"{upstream.url}/_fake/stats")[1]["requests"]
    outcomes: list[dict[str, Any]] = []
    client = threading.Thread(
        target=lambda: outcomes.extend(asyncio.run(_in_flight(service.url, slow, long)))
    )
    client.start()
    deadline = time.monotonic() + 10
    while get(f"{upstream.url}/_fake/stats")[1]["requests"] - requests_before < slow + long:
        assert time.monotonic() < deadline, "the requests never reached the upstream"
        time.sleep(0.02)

    signalled = time.monotonic()
    service.sigterm()
    while not refused(service.port):  # the listener closes as the signal is handled
        assert time.monotonic() - signalled < 2, "still accepting connections after SIGTERM"
        time.sleep(0.02)
    refused_after = time.monotonic() - signalled
    time.sleep(DRAIN_SECONDS / 2)
    assert service.alive(), "exited before the drain was over"
    assert refused(service.port), "accepted a connection during the drain"
    exit_code = service.popen.wait(timeout=SIGKILL_AFTER + 5)
    exited_after = time.monotonic() - signalled
    client.join(timeout=30)

    finished = [o for o in outcomes if not o["stream"] and o["status"] == 200 and o["done"]]
    cut = [o for o in outcomes if o["stream"] and not o["done"]]
    cut_after = [round(o["ended_at"] - signalled, 1) for o in cut]
    # uvicorn logs its cut at the end of the drain as ERRORs (one line, one traceback per task):
    # the contract's own behaviour, so not a crash. Anything else is.
    drain_end = "timeout graceful shutdown exceeded"
    entries = log_entries(service.log)
    cancelled = [e for e in entries if drain_end in e["message"] + e.get("stack_trace", "")]
    unexpected = [
        e["message"]
        for e in entries
        if (e["severity"] == "ERROR" or "stack_trace" in e) and e not in cancelled
    ]
    record(
        "sigterm",
        {
            "requests": slow + long,
            "faults_injected": 1,  # the SIGTERM
            "by_status": {str(s): n for s, n in Counter(o["status"] for o in outcomes).items()},
            "crashes": len(unexpected),
            "errors_logged_by_the_cut_at_drain_end": len(cancelled),
            "in_flight_at_signal": slow + long,
            "finished_within_drain": len(finished),
            "long_streams_cut": len(cut),
            "streams_cut_after_seconds": cut_after,
            "new_connections_refused_after_seconds": round(refused_after, 2),
            "exit_code": exit_code,
            "exited_after_seconds": round(exited_after, 1),
        },
    )
    assert len(outcomes) == slow + long
    assert len(finished) == slow, [o for o in outcomes if not o["stream"]]
    assert len(cut) == long
    assert all(seconds >= DRAIN_SECONDS for seconds in cut_after), cut_after
    assert exit_code == 0
    assert exited_after < SIGKILL_AFTER
    assert unexpected == []
    assert "shut down" in [entry["message"] for entry in entries]
