"""Load with wrk (`wrk -c64`, one thread per core the measured app does not use): run it, and read
its report."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import cores

# More threads than wrk's cores only make its threads wait for each other, and that wait shows
# in the measured p99 as if the app were slow.
THREADS, CONNECTIONS = len(cores.OTHERS), 64
COMMAND = f"wrk -t{THREADS} -c{CONNECTIONS}"
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class WrkError(RuntimeError):
    """wrk failed, or the server answered errors: such a run measures nothing."""


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_seconds: float
    p99_seconds: float
    requests: int
    non_2xx: int
    socket_errors: int


def duration_seconds(text: str) -> float:
    """wrk prints latencies as `812.00us`, `9.20ms`, `1.02s`."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise WrkError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _SECONDS[match[2]]


def parse(report: str) -> WrkResult:
    """Read req/s, p50 and p99 (needs --latency), and the error counts from wrk's text report."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", report, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", report, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", report, re.M)
    requests = re.search(r"^\s+(\d+) requests in", report, re.M)
    if not (rps and p50 and p99 and requests):
        raise WrkError(f"unexpected wrk output:\n{report}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report
    )
    return WrkResult(
        requests_per_second=float(rps[1]),
        p50_seconds=duration_seconds(p50[1]),
        p99_seconds=duration_seconds(p99[1]),
        requests=int(requests[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket.groups()) if socket else 0,
    )


def post_script(body: dict[str, object]) -> str:
    """A wrk Lua script that POSTs `body` as JSON (a Lua long string needs no escaping)."""
    text = json.dumps(body)
    if "]]" in text:
        raise ValueError("the body may not contain ']]' (it ends a Lua long string)")
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = [[{text}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )


def run(url: str, seconds: float, script: Path | None = None) -> WrkResult:
    """One wrk run; a run with any non-2xx answer or no request at all is an error."""
    argv = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency"]
    argv += ["-s", str(script), url] if script else [url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise WrkError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    result = parse(done.stdout)
    if result.non_2xx or not result.requests:
        raise WrkError(f"{url}: {result.non_2xx} non-2xx of {result.requests} answers")
    return result
