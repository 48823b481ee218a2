"""Where a request's CPU goes: py-spy samples an app while wrk loads it; the app's CPU time over
the run, divided by the requests wrk counted, is its CPU per request, and the share of samples in
which one of the service's own functions is on the stack says how much of that is ours.

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
from bench.servers import Probe, free_port, serving
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
    ours: list[tuple[str, float]]  # (function (file), share of samples with it on the stack)


def inclusive_shares(collapsed: str) -> dict[str, float]:
    """Per function (and file, not line): the share of samples with it anywhere on the stack."""
    counts: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        frames = set()
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            if match:
                frames.add(f"{match['function']} ({match['file']})")
        for frame in frames:
            counts[frame] = counts.get(frame, 0) + int(count)
    return {frame: count / total for frame, count in counts.items()} if total else {}


def own_code(shares: dict[str, float], count: int = 6) -> list[tuple[str, float]]:
    """The service's own functions (files under app/), largest share first; a function that
    only calls into others still shows, as on a flame graph."""
    ours = [(frame, share) for frame, share in shares.items()
            if re.search(r"(^|[ (/])app/", frame.split(" (", 1)[-1])]  # fmt: skip
    ours.sort(key=lambda item: item[1], reverse=True)
    return [(frame.replace("(app/", "(").strip(), share) for frame, share in ours[:count]]


def profiled(ctx: Context, app: str, path: str, body: dict[str, object] | None) -> Profile:
    port = free_port()
    lua = script(ctx, f"profile-{app}", body) if body else None
    argv = ctx.app_argv(app, port)
    with ExitStack() as stack:
        proc = stack.enter_context(
            serving(argv, Probe(port, path, body), cwd=ctx.project, env=ctx.env())
        )
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
        shares = inclusive_shares(output.read_text())
    ours = own_code(shares) if app == "service" else []
    return Profile(app, path, used / result.requests * 1e6, ours)


def notes(ctx: Context) -> list[str]:
    """One note per request path: the service's CPU per request against its reference's, and
    the service's own functions that account for it (µs per request, from their share)."""
    if not PY_SPY.exists():
        return ["Profile: py-spy is not installed in the bench's venv (requirements-dev.txt)."]
    lines = []
    for path, body, reference in CASES:
        service = profiled(ctx, "service", path, body)
        other = profiled(ctx, reference, path, body)
        cost = service.cpu_us_per_request
        ours = "; ".join(
            f"`{frame}` {share * cost:.0f} µs ({share:.0%})" for frame, share in service.ours
        )
        lines.append(
            f"Profile of {path} (py-spy, {SECONDS} s under wrk): {cost:.0f} µs CPU per request "
            f"against {other.cpu_us_per_request:.0f} µs for {reference} "
            f"({cost - other.cpu_us_per_request:+.0f} µs). The service's own functions on the "
            f"stack (inclusive): {ours or 'none sampled'}."
        )
    return lines
