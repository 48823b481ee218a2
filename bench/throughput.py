"""Requests/s and p99 under wrk (64 connections), one uvicorn worker each, servers side by side."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import wrk
from bench.project import CHAT_BODY, MODEL, Context, upstream_apis
from bench.servers import Probe, free_port, serving, wait_ready
from bench.stats import Goal, Row, Sample, Spec, alternate

HEALTH_RPS = Spec(f"GET /health requests/s ({wrk.COMMAND})", Goal(">=", 0.90), "bare", "req/s")
CHAT_RPS = {
    api: Spec(f"POST /v1/chat requests/s ({api})", Goal(">=", 0.90), "minimal-proxy", "req/s")
    for api in upstream_apis()
}
CHAT_P99 = {
    api: Spec(f"POST /v1/chat p99 latency ({api})", Goal("<=", 1.15), "minimal-proxy", "ms")
    for api in upstream_apis()
}
# The fake upstream must not be what limits /v1/chat: alone, it must serve at least twice
# the rate at which the minimal proxy calls it.
UPSTREAM_RPS = Spec(
    "paced fake upstream alone: POST /v1/chat/completions requests/s",
    Goal(">=", 2.0),
    "minimal-proxy /v1/chat requests/s",
    "req/s",
)
SPECS = (HEALTH_RPS, *CHAT_RPS.values(), *CHAT_P99.values(), UPSTREAM_RPS)
# What the service does per request beyond its reference (read from the generated app): where
# to look first when a throughput goal is missed; the profile in the notes says how much.
HEALTH_WORK = (
    "Per request the service also runs its two ASGI middlewares (trace context and body-size "
    "cap; the /v1 guard's path check); bare runs none. The profile below compares their CPU."
)
CHAT_WORK = (
    "Per request the service also runs its middleware, the rate limiter, a larger request "
    "model, and logs one JSON usage line (to /dev/null here); minimal-proxy does none of these."
)
UPSTREAM_BODY = {"model": MODEL, "messages": [{"role": "user", "content": CHAT_BODY["message"]}]}


@dataclass(frozen=True)
class Side:
    """A serving app: each call is one measured wrk run against it."""

    url: str
    seconds: float
    lua: Path | None
    pid: int

    def __call__(self) -> wrk.WrkResult:
        return wrk.run(self.url, self.seconds, self.lua)


def script(ctx: Context, name: str, body: dict[str, object]) -> Path:
    path = ctx.work / f"{name}.lua"
    path.write_text(wrk.post_script(body))
    return path


def served(
    ctx: Context,
    servers: ExitStack,
    app: str,
    api: str,
    path: str,
    lua: Path | None,
    env: dict[str, str] | None = None,
) -> Side:
    """Start `app`, warm it up, and return one measured wrk run against it."""
    port = free_port()
    body = CHAT_BODY if lua else None
    argv = ctx.app_argv(app, port)
    probe = Probe(port, path, body)
    proc = servers.enter_context(
        serving(argv, probe, cwd=ctx.projects[api], env=env or ctx.env(api))
    )
    if app == "service":
        wait_ready(port)
    url = f"http://127.0.0.1:{port}{path}"
    wrk.run(url, 1, lua)  # warm-up: connection pools, caches, lazy imports
    return Side(url, ctx.wrk_seconds, lua, proc.pid)


def side_by_side(
    ctx: Context, reference: str, api: str, path: str, body: dict[str, object] | None
) -> tuple[list[wrk.WrkResult], list[wrk.WrkResult]]:
    """wrk against the service and the reference, both serving, alternately."""
    lua = script(ctx, reference, body) if body else None
    with ExitStack() as servers:
        service = served(ctx, servers, "service", api, path, lua)
        other = served(ctx, servers, reference, api, path, lua)
        return alternate(ctx.runs, service, other)


def rps(results: list[wrk.WrkResult]) -> Sample:
    return Sample(tuple(r.requests_per_second for r in results))


def p99_ms(results: list[wrk.WrkResult]) -> Sample:
    return Sample(tuple(r.p99_seconds * 1000 for r in results))


def tail_note(chat: list[wrk.WrkResult], proxy: list[wrk.WrkResult]) -> str:
    """The typical request beside the tail: a p99 is the slowest 1 % of one run's requests, so a
    stall of the whole machine moves it, and the median latency shows whether the app did."""

    def median_ms(results: list[wrk.WrkResult]) -> float:
        return Sample(tuple(r.p50_seconds * 1000 for r in results)).median

    requests = Sample(tuple(float(r.requests) for r in chat)).median
    return (
        f"Median latency (p50) {median_ms(chat):.0f} ms against {median_ms(proxy):.0f} ms; "
        f"each run's p99 is its slowest {requests / 100:.0f} requests of about {requests:.0f}."
    )


def measure(ctx: Context) -> list[Row]:
    health, bare = side_by_side(ctx, "bare", ctx.api, "/health", None)
    rows = [Row(HEALTH_RPS, rps(health), rps(bare), note=HEALTH_WORK)]
    proxy_rps = None
    for api in CHAT_RPS:
        chat, proxy = side_by_side(ctx, "minimal-proxy", api, "/v1/chat", CHAT_BODY)
        rows.append(Row(CHAT_RPS[api], rps(chat), rps(proxy), note=CHAT_WORK))
        rows.append(Row(CHAT_P99[api], p99_ms(chat), p99_ms(proxy), note=tail_note(chat, proxy)))
        proxy_rps = proxy_rps or rps(proxy)
    upstream_url = f"http://127.0.0.1:{ctx.upstream_port}/v1/chat/completions"
    lua = script(ctx, "upstream", UPSTREAM_BODY)
    upstream = [wrk.run(upstream_url, ctx.wrk_seconds, lua) for _ in range(ctx.runs)]
    rows.append(Row(UPSTREAM_RPS, rps(upstream), proxy_rps))
    return rows
