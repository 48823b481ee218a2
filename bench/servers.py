"""Start a server (a process or a container), wait for its first 200, stop it: always bounded."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 60.0  # seconds; a server that takes longer has failed, not started slowly
POLL_INTERVAL = 0.005  # short next to a cold start (~1 s); a refused connect costs microseconds


@dataclass(frozen=True)
class Probe:
    """One request to 127.0.0.1 that must answer 200."""

    port: int
    path: str = "/health"
    body: dict[str, object] | None = None  # set: POST it as JSON

    def answers_200(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            if self.body is None:
                conn.request("GET", self.path)
            else:
                payload = json.dumps(self.body)
                conn.request("POST", self.path, payload, {"Content-Type": "application/json"})
            return conn.getresponse().status == 200
        except OSError:  # refused or reset: not listening yet
            return False
        finally:
            conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def launched(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    cleanup: Callable[[], object] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run argv for the duration of the block; `cleanup` (e.g. `docker rm -f`) runs first."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        if cleanup:
            cleanup()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def wait_for_200(probe: Probe, proc: subprocess.Popen[bytes], started: float) -> float:
    """Seconds from `started` (a perf_counter reading) to the first 200 answer."""
    while not probe.answers_200():
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited {proc.returncode} before answering 200")
        if time.perf_counter() - started > START_TIMEOUT:
            raise RuntimeError(f"{proc.args} gave no 200 within {START_TIMEOUT:g} s")
        time.sleep(POLL_INTERVAL)
    return time.perf_counter() - started


def wait_ready(port: int, timeout: float = START_TIMEOUT) -> None:
    """Until the service's /ready answers 200: its OpenAI client is built (openai imported in
    a thread at start-up, which would otherwise compete with the measured requests)."""
    probe = Probe(port, "/ready")
    deadline = time.monotonic() + timeout
    while not probe.answers_200():
        if time.monotonic() > deadline:
            raise RuntimeError(f"/ready on port {port} gave no 200 within {timeout:g} s")
        time.sleep(0.05)


def time_to_first_200(
    argv: list[str],
    probe: Probe,
    *,
    cwd: Path,
    env: dict[str, str],
    cleanup: Callable[[], object] | None = None,
) -> float:
    """Spawn argv, and return the seconds until `probe` first answers 200; then stop it."""
    started = time.perf_counter()
    with launched(argv, cwd=cwd, env=env, cleanup=cleanup) as proc:
        return wait_for_200(probe, proc, started)


@contextmanager
def serving(
    argv: list[str], probe: Probe, *, cwd: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A server that answers `probe` for the duration of the block."""
    with launched(argv, cwd=cwd, env=env) as proc:
        wait_for_200(probe, proc, time.perf_counter())
        yield proc
