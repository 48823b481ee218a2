"""Where a request's CPU goes: py-spy samples an app while wrk loads it; the app's CPU time over
the run, divided by the requests wrk counted, is its CPU per request; the share of samples whose
running line is in each package splits it, so the service's extra cost is named by package.

Sampling is `--nonblocking` (the process is never paused), so the figures stay those of the app.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench import streaming, wrk
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
    functions: dict[str, float]  # function (file) → share of samples it was running


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


def differences(
    service: Profile, reference: Profile, count: int = 5, by: str = "packages"
) -> list[tuple[str, float]]:
    """µs per request by package (or function), service minus reference, largest first."""
    mine, theirs = getattr(service, by), getattr(reference, by)
    names = set(mine) | set(theirs)

    def cost(shares: dict[str, float], profile: Profile, name: str) -> float:
        return shares.get(name, 0.0) * profile.cpu_us_per_request

    diffs = [(name, cost(mine, service, name) - cost(theirs, reference, name)) for name in names]
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
        spying = spy(proc.pid, SECONDS, output)
        before = cpu_seconds(proc.pid)
        result = wrk.run(url, SECONDS, lua)
        used = cpu_seconds(proc.pid) - before
        _, errors = spying.communicate(timeout=60)
        if spying.returncode != 0 or not output.exists():
            raise RuntimeError(f"py-spy failed: {errors.strip()[-300:]}")
        packages, functions = self_shares(output.read_text())
    return Profile(app, path, used / result.requests * 1e6, packages, functions)


def spy(pid: int, seconds: float, output: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        # py-spy takes whole seconds.
        [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
         "--format", "raw", "--output", str(output), "--nonblocking", "--rate", "250"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def streamed(ctx: Context, app: str) -> Profile:
    """py-spy over the steady state of one streaming ramp (bench/streaming.py's load)."""
    output = ctx.work / f"profile-stream-{app}.txt"
    spies: list[subprocess.Popen[str]] = []

    def attach(pid: int, start: float) -> None:
        delay = start + streaming.PACE.stream_seconds - time.monotonic()
        # Ends a second before the last arrival: the app is stopped soon after that.
        seconds = streaming.RAMP_SECONDS - streaming.PACE.stream_seconds - 1.0
        timer = threading.Timer(max(delay, 0), lambda: spies.append(spy(pid, seconds, output)))
        timer.daemon = True
        timer.start()

    ramp = f"ramp:{streaming.RAMP_RATE:g}:{streaming.RAMP_SECONDS:g}"
    upstream = (ctx.upstream_port, ctx.upstream_pid)
    until = streaming.RAMP_SECONDS + 5.0
    load = streaming.run_load(ctx, app, ramp, upstream, streaming.PACE, until, attach)
    if not spies:
        raise RuntimeError("py-spy was not started during the stream")
    _, errors = spies[0].communicate(timeout=60)
    if spies[0].returncode != 0 or not output.exists():
        raise RuntimeError(f"py-spy failed: {errors.strip()[-300:]}")
    packages, functions = self_shares(output.read_text())
    return Profile(app, "stream", streaming.cpu_per_event(load), packages, functions)


def explained(service: Profile, other: Profile, what: str, unit: str) -> str:
    cost = service.cpu_us_per_request
    where = ", ".join(f"{name} {diff:+.0f} µs" for name, diff in differences(service, other))
    functions = "; ".join(
        f"`{name}` {diff:+.0f} µs" for name, diff in differences(service, other, 4, "functions")
    )
    ours = "; ".join(
        f"`{name}` {share * cost:.0f} µs" for name, share in own_code(service.functions)
    )
    return (
        f"Profile of {what} (py-spy): {cost:.0f} µs CPU per {unit} against "
        f"{other.cpu_us_per_request:.0f} µs for {other.app} "
        f"({cost - other.cpu_us_per_request:+.0f} µs). Where the difference runs (self time, µs "
        f"per {unit}), by package: {where}; by function: {functions}. The service's own lines: "
        f"{ours or 'none sampled'}."
    )


def notes(ctx: Context) -> list[str]:
    """One note per request path, and one for a streamed event: the service's CPU against its
    reference's, where the difference runs, and the service's own busiest functions."""
    if not PY_SPY.exists():
        return ["Profile: py-spy is not installed in the bench's venv (requirements-dev.txt)."]
    cases: list[tuple[str, Callable[[], str]]] = [
        (path, partial(request_note, ctx, path, body, reference)) for path, body, reference in CASES
    ]
    cases.append(("a streamed event", partial(stream_note, ctx)))
    lines = []
    for what, note in cases:
        try:
            lines.append(note())
        except Exception as error:  # one profile failing leaves the others standing
            lines.append(f"Profile of {what} not taken: {error}".splitlines()[0])
    return lines


def request_note(ctx: Context, path: str, body: dict[str, object] | None, reference: str) -> str:
    service = profiled(ctx, "service", path, body)
    other = profiled(ctx, reference, path, body)
    return explained(service, other, f"{path} ({SECONDS} s under wrk)", "request")


def stream_note(ctx: Context) -> str:
    service, other = streamed(ctx, "service"), streamed(ctx, "minimal-proxy")
    return explained(service, other, "a streamed event (~400 open streams)", "event")
