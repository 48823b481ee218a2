"""What the shared limiter and token budget cost per request: /v1/chat with REDIS_URL (a real
redis-server on 127.0.0.1, started here) and TOKEN_BUDGET_PER_DAY set, against the same service
without them, side by side under wrk."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from bench import wrk
from bench.procstat import cpu_seconds
from bench.project import CHAT_BODY, Context
from bench.servers import free_port
from bench.stats import Goal, Row, Sample, Spec, alternate
from bench.throughput import Side, rps, script, served

SHARED = Spec(
    "POST /v1/chat requests/s with the shared limiter and budget on Redis",
    Goal(">=", 0.90),
    "without REDIS_URL",
    "req/s",
)
SPECS = (SHARED,)
# A budget no benchmark exhausts: every request reserves and settles, none is refused.
BUDGET = str(10**12)


def redis_cli(port: int, *command: str) -> str:
    done = subprocess.run(["redis-cli", "-p", str(port), *command], capture_output=True,
                          text=True, timeout=10, check=False)  # fmt: skip
    return done.stdout.strip()


def commands_processed(port: int) -> int:
    for line in redis_cli(port, "info", "stats").splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":")[1])
    raise RuntimeError("redis-server reported no total_commands_processed")


@contextmanager
def redis_server() -> Iterator[int]:
    """A throwaway redis-server without persistence; yields its port, stops it by its pid."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed (.ci/provision installs it)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as data:
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", data]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while redis_cli(port, "ping") != "PONG":
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING")
                time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=15)


class CpuPerRequest:
    """Runs `side` and keeps the app's own CPU time per answered request of each run (µs): what
    one vCPU pays per request, whatever the machine's other cores do."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.us: list[float] = []

    def __call__(self) -> wrk.WrkResult:
        before = cpu_seconds(self.side.pid)
        result = self.side()
        self.us.append((cpu_seconds(self.side.pid) - before) / result.requests * 1e6)
        return result

    @property
    def median(self) -> float:
        return Sample(tuple(self.us)).median


def supported(ctx: Context) -> bool:
    """The generated settings read REDIS_URL (the shared limits are part of this template)."""
    return "redis_url" in (ctx.project / "app" / "core" / "config.py").read_text()


def measure(ctx: Context) -> list[Row]:
    if not supported(ctx):
        return [Row(SHARED, note="not measured: the generated service does not read REDIS_URL")]
    lua = script(ctx, "shared", CHAT_BODY)
    with redis_server() as redis_port, ExitStack() as servers:
        shared_env = {
            **ctx.env(),
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "TOKEN_BUDGET_PER_DAY": BUDGET,
        }
        with_redis = CpuPerRequest(
            served(ctx, servers, "service", ctx.api, "/v1/chat", lua, shared_env)
        )
        without = CpuPerRequest(served(ctx, servers, "service", ctx.api, "/v1/chat", lua))
        before = commands_processed(redis_port)
        shared, plain = alternate(ctx.runs, with_redis, without)
        used = commands_processed(redis_port) - before
    requests = sum(result.requests for result in shared)
    note = (
        f"Redis processed {used:,} commands for {requests:,} requests, in three round trips a "
        "request: the shared limit (in the guard, before the body is read), the budget's "
        "reserve before the upstream call and its settle after it, one EVALSHA each. "
        f"The service's own CPU per request (median of the runs): {with_redis.median:,.0f} µs "
        f"with Redis, {without.median:,.0f} µs without; on a core of its own (the notes say "
        "whether it had one), the app's requests/s follow its CPU per request."
    )
    if used < requests:  # the service did not consult Redis per request: no shared limit measured
        return [Row(SHARED, note=f"not measured: {note} The limiter did not use Redis.")]
    return [Row(SHARED, rps(shared), rps(plain), note=note)]
