"""Where a request's CPU goes: py-spy samples an app while wrk loads it; the app's CPU time over
the run, divided by the requests wrk counted, is its CPU per request; the share of samples whose
running line is in each package splits it, so the service's extra cost is named by package.

Sampling is `--nonblocking` (the process is never paused), so the figures stay those of the app.
"""

from __future__ import annotations

import re
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import wrk
from bench.procstat import cpu_seconds
from bench.project import CHAT_BODY, Context
from bench.servers import Probe, free_port, serving, wait_ready
from bench.throughput import script

PY_SPY = Path(sys.executable).parent / "py-spy"
SECONDS = 5
# `function (path/to/file.py:123)`, the frame format of py-spy's raw (collapsed) output.
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
CASES = (("/health", None, "bare"), ("/v1/chat", CHAT_BODY, "minimal-proxy"))


@dataclass(frozen=True)
class Profile:
    app: str
    path: str
    cpu_us_per_request: float
    packages: dict[str, float]  # package → share of samples whose running line is in it
    ours: list[tuple[str, float]]  # (function (file) under app/, share of samples it was running)


def self_shares(collapsed: str) -> tuple[dict[str, float], dict[str, float]]:
    """From py-spy's raw output: the share of samples whose innermost frame (the line running)
    is in each package (`starlette/routing.py` → starlette), and in each function."""
    packages: dict[str, int] = {}
    functions: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        match = _FRAME.match(stack.rsplit(";", 1)[-1]) if stack else None
        if not match or not count.isdigit():
            continue
        total += int(count)
        package = match["file"].split("/", 1)[0].removesuffix(".py")
        packages[package] = packages.get(package, 0) + int(count)
        function = f"{match['function']} ({match['file']})"
        functions[function] = functions.get(function, 0) + int(count)
    if not total:
        return {}, {}
    return (
        {name: count / total for name, count in packages.items()},
        {name: count / total for name, count in functions.items()},
    )


def own_code(functions: dict[str, float], count: int = 4) -> list[tuple[str, float]]:
    """The service's own functions (files under app/), busiest first."""
    ours = [(name, share) for name, share in functions.items() if "(app/" in name]
    ours.sort(key=lambda item: item[1], reverse=True)
    return ours[:count]


def differences(service: Profile, reference: Profile, count: int = 5) -> list[tuple[str, float]]:
    """µs per request by package, service minus reference, largest first."""
    names = set(service.packages) | set(reference.packages)

    def cost(profile: Profile, name: str) -> float:
        return profile.packages.get(name, 0.0) * profile.cpu_us_per_request

    diffs = [(name, cost(service, name) - cost(reference, name)) for name in names]
    diffs.sort(key=lambda item: (-abs(item[1]), item[0]))
    return diffs[:count]


def profiled(ctx: Context, app: str, path: str, body: dict[str, object] | None) -> Profile:
    port = free_port()
    lua = script(ctx, f"profile-{app}", body) if body else None
    argv = ctx.app_argv(app, port)
    with ExitStack() as stack:
        proc = stack.enter_context(
            serving(argv, Probe(port, path, body), cwd=ctx.project, env=ctx.env())
        )
        if app == "service":
            wait_ready(port)
        url = f"http://127.0.0.1:{port}{path}"
        wrk.run(url, 1, lua)  # warm-up
        output = ctx.work / f"profile-{app}.txt"
        spy = subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(proc.pid), "--duration", str(SECONDS),
             "--format", "raw", "--output", str(output), "--nonblocking", "--rate", "250"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        before = cpu_seconds(proc.pid)
        result = wrk.run(url, SECONDS, lua)
        used = cpu_seconds(proc.pid) - before
        _, errors = spy.communicate(timeout=60)
        if spy.returncode != 0 or not output.exists():
            raise RuntimeError(f"py-spy failed: {errors.strip()[-300:]}")
        packages, functions = self_shares(output.read_text())
    return Profile(app, path, used / result.requests * 1e6, packages, own_code(functions))


def notes(ctx: Context) -> list[str]:
    """One note per request path: the service's CPU per request against its reference's, where
    the difference goes by package, and the service's own busiest functions."""
    if not PY_SPY.exists():
        return ["Profile: py-spy is not installed in the bench's venv (requirements-dev.txt)."]
    lines = []
    for path, body, reference in CASES:
        service = profiled(ctx, "service", path, body)
        other = profiled(ctx, reference, path, body)
        cost = service.cpu_us_per_request
        where = ", ".join(f"{name} {diff:+.0f} µs" for name, diff in differences(service, other))
        ours = "; ".join(f"`{name}` {share * cost:.0f} µs" for name, share in service.ours)
        lines.append(
            f"Profile of {path} (py-spy, {SECONDS} s under wrk): {cost:.0f} µs CPU per request "
            f"against {other.cpu_us_per_request:.0f} µs for {reference} "
            f"({cost - other.cpu_us_per_request:+.0f} µs). Where the difference runs (self time "
            f"by package, µs per request): {where}. The service's own lines: "
            f"{ours or 'none sampled'}."
        )
    return lines
