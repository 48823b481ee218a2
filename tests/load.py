"""A bounded load run against the service: a fixed fault mix, every answer checked on arrival.

Each request asks the fake upstream for one behaviour (`fault:NAME` in the message) and must get
the answer the HTTP contract promises for it (issue 3): 429 with Retry-After passed through, 502
for upstream errors, 504 for timeouts, an in-band error event for a stream cut after its 200.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Kind:
    name: str
    message: str
    stream: bool
    status: int  # what the service must answer
    code: str | None  # its error code (for a cut stream: the in-band error event's)
    weight: int  # share of the mix, in percent


KINDS = [
    Kind("ok", "hello there", False, 200, None, 48),
    Kind("stream", "hello there", True, 200, None, 22),
    Kind("429", "fault:429", False, 429, "upstream_rate_limited", 5),
    Kind("500", "fault:500", False, 502, "upstream_error", 5),
    Kind("slow", "fault:slow", False, 504, "upstream_timeout", 4),
    Kind("drop", "fault:drop", False, 502, "upstream_unreachable", 4),
    Kind("malformed", "fault:malformed", False, 502, "upstream_error", 3),
    Kind("html", "fault:html", False, 502, "upstream_error", 2),
    Kind("401", "fault:401", False, 502, "upstream_auth", 2),
    Kind("cut-stream", "fault:cut-stream", True, 200, "upstream_unreachable", 5),
]
assert sum(kind.weight for kind in KINDS) == 100
FAULT_SHARE = sum(kind.weight for kind in KINDS if kind.message.startswith("fault:")) / 100


def mix(count: int, seed: int) -> list[Kind]:
    """`count` requests in the mix's proportions, in a shuffled (reproducible) order."""
    kinds = [kind for kind in KINDS for _ in range(round(count * kind.weight / 100))]
    random.Random(seed).shuffle(kinds)  # noqa: S311 - an order, not a secret
    return kinds


def problem(kind: Kind, status: int, headers: httpx.Headers, body: str) -> str | None:
    """What is wrong with one answer, or None when it is what the contract promises."""
    if "Traceback" in body:
        return "a traceback in the body"
    if status != kind.status:
        return f"status {status}, expected {kind.status}: {body[:200]}"
    if kind.stream and status == 200:
        return _stream_problem(kind, body)
    data = json.loads(body)
    if status == 200:
        whole = {"reply", "model", "finish_reason", "usage"} <= set(data) and data["finish_reason"]
        return None if whole else f"not a reply: {body[:200]}"
    if set(data) != {"error"} or set(data["error"]) != {"code", "message"}:
        return f"not an error body: {body[:200]}"
    if data["error"]["code"] != kind.code:
        return f"error code {data['error']['code']}, expected {kind.code}"
    if status == 429 and headers.get("retry-after") != "7":
        return f"Retry-After {headers.get('retry-after')!r} not passed through"
    return None


def _stream_problem(kind: Kind, body: str) -> str | None:
    events = [line.removeprefix("data: ") for line in body.split("\n\n") if line]
    last = events[-1] if events else ""
    if kind.code is None:
        deltas = [json.loads(event)["delta"] for event in events[:-2]]
        done = len(events) > 1 and "done" in json.loads(events[-2])
        finished = last == "[DONE]" and deltas and done
        return None if finished else f"stream did not finish: {body[:200]}"
    if last == "[DONE]" or json.loads(last).get("error", {}).get("code") != kind.code:
        return f"cut stream without its error event: {body[:200]}"
    return None


@dataclass
class LoadResult:
    sent: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    health_probes: int = 0
    health_failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_report(self) -> dict[str, object]:
        return {
            "requests": self.sent,
            "faults_injected": sum(n for k, n in self.by_kind.items() if k not in {"ok", "stream"}),
            "by_kind": dict(sorted(self.by_kind.items())),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "contract_violations": len(self.problems),
            "health_probes": self.health_probes,
            "health_failures": len(self.health_failures),
            "seconds": round(self.seconds, 1),
        }


async def _one(client: httpx.AsyncClient, kind: Kind, result: LoadResult) -> None:
    payload = {"message": kind.message, "stream": kind.stream}
    try:
        response = await client.post("/v1/chat", json=payload)
    except httpx.HTTPError as error:  # the service must answer every request
        result.problems.append(f"{kind.name}: no answer ({type(error).__name__})")
        return
    result.by_status[response.status_code] += 1
    found = problem(kind, response.status_code, response.headers, response.text)
    if found:
        result.problems.append(f"{kind.name}: {found}")


async def _probe_health(base_url: str, stop: asyncio.Event, result: LoadResult) -> None:
    """GET /health every 100 ms on a connection of its own, while the load runs."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        while not stop.is_set():
            result.health_probes += 1
            try:
                response = await client.get("/health")
                if response.status_code != 200:
                    result.health_failures.append(f"status {response.status_code}")
            except httpx.HTTPError as error:
                result.health_failures.append(type(error).__name__)
            await asyncio.sleep(0.1)


async def _run(base_url: str, kinds: list[Kind], concurrency: int) -> LoadResult:
    result = LoadResult()
    queue = iter(kinds)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        for kind in queue:  # workers share one iterator: each request is sent exactly once
            result.sent += 1
            result.by_kind[kind.name] += 1
            await _one(client, kind, result)

    stop = asyncio.Event()
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        probe = asyncio.create_task(_probe_health(base_url, stop, result))
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        stop.set()
        await probe
    result.seconds = time.monotonic() - started
    return result


def run_load(base_url: str, kinds: list[Kind], concurrency: int) -> LoadResult:
    return asyncio.run(_run(base_url, kinds, concurrency))


async def _disconnect(client: httpx.AsyncClient, message: str) -> bool:
    """Open a stream, read its first event, hang up. True when an event came first."""
    payload = {"message": message, "stream": True}
    async with client.stream("POST", "/v1/chat", json=payload) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                return True
    return False


async def _disconnects(base_url: str, count: int, concurrency: int, message: str) -> int:
    # No keep-alive: closing a stream early must close its connection, as a vanished client does.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        semaphore = asyncio.Semaphore(concurrency)

        async def one() -> bool:
            async with semaphore:
                return await _disconnect(client, message)

        return sum(await asyncio.gather(*(one() for _ in range(count))))


def disconnect_mid_stream(base_url: str, count: int, concurrency: int, message: str) -> int:
    """`count` clients that hang up after the first event; how many got one first."""
    return asyncio.run(_disconnects(base_url, count, concurrency, message))
