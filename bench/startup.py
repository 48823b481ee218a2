"""Process spawn → first 200: what a Cloud Run cold start costs before the first answer."""

from __future__ import annotations

from functools import partial

from bench.project import CHAT_BODY, Context, upstream_apis
from bench.servers import Probe, free_port, time_to_first_200
from bench.stats import Goal, Row, Sample, Spec, alternate

# The default bake carries every optional part (shared limits, both upstream adapters) unused:
# /health must not pay for code it does not run.
HEALTH = Spec(
    "process spawn → first 200 on GET /health (optional code present, unused)",
    Goal("<=", 1.05),
    "bare",
    "s",
)
CHAT = {
    api: Spec(f"process spawn → first 200 on POST /v1/chat ({api})", Goal("<=", 1.10),
              "minimal-proxy", "s")
    for api in upstream_apis()
}  # fmt: skip
SPECS = (HEALTH, *CHAT.values())


def spawn_seconds(
    ctx: Context, app: str, api: str, probe_path: str, body: dict[str, object] | None
) -> float:
    port = free_port()
    probe = Probe(port, probe_path, body)
    argv = ctx.app_argv(app, port)
    return time_to_first_200(argv, probe, cwd=ctx.projects[api], env=ctx.env(api))


def measure(ctx: Context) -> list[Row]:
    rows = []
    cases = [(HEALTH, ctx.api, "/health", None)]
    cases += [(spec, api, "/v1/chat", CHAT_BODY) for api, spec in CHAT.items()]
    for spec, api, path, body in cases:
        reference = str(spec.reference)
        # One unmeasured start each: writes the app's bytecode and warms the page cache.
        for app in ("service", reference):
            spawn_seconds(ctx, app, api, path, body)
        service, ref = alternate(
            ctx.runs,
            partial(spawn_seconds, ctx, "service", api, path, body),
            partial(spawn_seconds, ctx, reference, api, path, body),
        )
        rows.append(Row(spec, Sample(tuple(service)), Sample(tuple(ref))))
    return rows
