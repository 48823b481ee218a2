"""Process spawn → first 200: what a Cloud Run cold start costs before the first answer."""

from __future__ import annotations

from functools import partial

from bench.project import CHAT_BODY, Context
from bench.servers import Probe, free_port, time_to_first_200
from bench.stats import Goal, Row, Sample, Spec, alternate

HEALTH = Spec("process spawn → first 200 on GET /health", Goal("<=", 1.20), "bare", "s")
CHAT = Spec("process spawn → first 200 on POST /v1/chat", Goal("<=", 1.10), "minimal-proxy", "s")
SPECS = (HEALTH, CHAT)


def spawn_seconds(ctx: Context, app: str, probe_path: str, body: dict[str, object] | None) -> float:
    port = free_port()
    probe = Probe(port, probe_path, body)
    return time_to_first_200(ctx.app_argv(app, port), probe, cwd=ctx.project, env=ctx.env())


def measure(ctx: Context) -> list[Row]:
    rows = []
    for spec, path, body in ((HEALTH, "/health", None), (CHAT, "/v1/chat", CHAT_BODY)):
        reference = str(spec.reference)
        # One unmeasured start each: writes the app's bytecode and warms the page cache.
        for app in ("service", reference):
            spawn_seconds(ctx, app, path, body)
        service, ref = alternate(
            ctx.runs,
            partial(spawn_seconds, ctx, "service", path, body),
            partial(spawn_seconds, ctx, reference, path, body),
        )
        rows.append(Row(spec, Sample(tuple(service)), Sample(tuple(ref))))
    return rows
