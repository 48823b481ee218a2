"""Requests/s and p99 under `wrk -t2 -c64`, one uvicorn worker each, servers side by side."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from bench import wrk
from bench.project import CHAT_BODY, MODEL, Context
from bench.servers import Probe, free_port, serving
from bench.stats import Goal, Row, Sample, Spec, alternate

HEALTH_RPS = Spec("GET /health requests/s (wrk -t2 -c64)", Goal(">=", 0.90), "bare", "req/s")
CHAT_RPS = Spec("POST /v1/chat requests/s", Goal(">=", 0.90), "minimal-proxy", "req/s")
CHAT_P99 = Spec("POST /v1/chat p99 latency", Goal("<=", 1.15), "minimal-proxy", "ms")
# The fake upstream must not be what limits /v1/chat: alone, it must serve at least twice
# the rate at which the minimal proxy calls it.
UPSTREAM_RPS = Spec(
    "fake upstream alone: POST /v1/chat/completions requests/s",
    Goal(">=", 2.0),
    "minimal-proxy /v1/chat requests/s",
    "req/s",
)
SPECS = (HEALTH_RPS, CHAT_RPS, CHAT_P99, UPSTREAM_RPS)
# What the service does per request beyond its reference (read from the generated app; the
# bench does not profile): where to look first when a throughput goal is missed.
HEALTH_WORK = (
    "Per request the service also runs its two ASGI middlewares (trace context, body-size cap); "
    "bare runs none."
)
CHAT_WORK = (
    "Per request the service also runs its middlewares, the rate limiter, a larger request "
    "model, and logs one JSON usage line (to /dev/null here); minimal-proxy does none of these."
)
UPSTREAM_BODY = {"model": MODEL, "messages": [{"role": "user", "content": CHAT_BODY["message"]}]}


def script(ctx: Context, name: str, body: dict[str, object]) -> Path:
    path = ctx.work / f"{name}.lua"
    path.write_text(wrk.post_script(body))
    return path


def side_by_side(
    ctx: Context, reference: str, path: str, body: dict[str, object] | None
) -> tuple[list[wrk.WrkResult], list[wrk.WrkResult]]:
    """wrk against the service and the reference, both serving, alternately."""
    lua = script(ctx, reference, body) if body else None
    urls = {}
    with ExitStack() as servers:
        for app in ("service", reference):
            port = free_port()
            argv = ctx.app_argv(app, port)
            probe = Probe(port, path, body)
            servers.enter_context(serving(argv, probe, cwd=ctx.project, env=ctx.env()))
            urls[app] = f"http://127.0.0.1:{port}{path}"
            wrk.run(urls[app], 1, lua)  # warm-up: connection pools, caches, lazy imports
        return alternate(
            ctx.runs,
            lambda: wrk.run(urls["service"], ctx.wrk_seconds, lua),
            lambda: wrk.run(urls[reference], ctx.wrk_seconds, lua),
        )


def measure(ctx: Context) -> list[Row]:
    health, bare = side_by_side(ctx, "bare", "/health", None)
    chat, proxy = side_by_side(ctx, "minimal-proxy", "/v1/chat", CHAT_BODY)
    upstream_url = f"http://127.0.0.1:{ctx.upstream_port}/v1/chat/completions"
    lua = script(ctx, "upstream", UPSTREAM_BODY)
    upstream = [wrk.run(upstream_url, ctx.wrk_seconds, lua) for _ in range(ctx.runs)]

    def rps(results: list[wrk.WrkResult]) -> Sample:
        return Sample(tuple(r.requests_per_second for r in results))

    def p99_ms(results: list[wrk.WrkResult]) -> Sample:
        return Sample(tuple(r.p99_seconds * 1000 for r in results))

    return [
        Row(HEALTH_RPS, rps(health), rps(bare), note=HEALTH_WORK),
        Row(CHAT_RPS, rps(chat), rps(proxy), note=CHAT_WORK),
        Row(CHAT_P99, p99_ms(chat), p99_ms(proxy)),
        Row(UPSTREAM_RPS, rps(upstream), rps(proxy)),
    ]
