"""The baked service and its fakes as real processes on 127.0.0.1, for the slow tests.

The service runs the Dockerfile's own CMD, as PID 1 of a fresh PID namespace (`unshare`), which
is what it is in a container: uvicorn re-raises SIGTERM after its graceful shutdown, and only
PID 1 ignores that and exits 0, as Cloud Run sees it. Every process logs to a file that the leak
scan reads at teardown. Also a pytest plugin (conftest's `pytest_plugins`): the module-scoped
`started` and `upstream` fixtures that the slow test modules share.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.leaks import OPENAI_TEST_KEY, LeakScan

# The fake's slow fault answers after 3 s: beyond the 1 s client timeout of the load run (504),
# within the SIGTERM run's 8 s drain. A drip stream lasts 40 x 0.5 s = 20 s, far longer than
# any wait in the tests, so a stream is only ever seen closed because the service closed it.
SLOW_SECONDS, DRIP_SECONDS = 3, 0.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 5) -> tuple[int, Any]:
    """GET `url`: status and JSON body (errors included)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(url: str, status: int, seconds: float = 30) -> Any:
    """Poll `url` until it answers `status` (bounded); its JSON body."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            answer = get(url, timeout=2)
            if answer[0] == status:
                return answer[1]
        except OSError:
            answer = None
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer {status} in {seconds} s (last: {answer})")
        time.sleep(0.05)


def dockerfile_command(project: Path) -> list[str]:
    """The image's CMD, bound to 127.0.0.1 instead of the container's 0.0.0.0."""
    line = next(x for x in (project / "Dockerfile").read_text().splitlines() if x.startswith("CMD"))
    argv: list[str] = json.loads(line.removeprefix("CMD"))
    assert "--timeout-graceful-shutdown" in argv[-1], argv
    return [re.sub(r"--host 0\.0\.0\.0", "--host 127.0.0.1", arg) for arg in argv]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


@dataclass
class Service(Process):
    @property
    def pid(self) -> int:
        """uvicorn's pid (outside the namespace): the one child of `unshare`."""
        children = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children").read_text()
        return int(children.split()[0])

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert found, status
        return int(found[1])

    def sigterm(self) -> None:
        os.kill(self.pid, signal.SIGTERM)

    def stop(self) -> None:
        # `unshare` ignores SIGTERM while it waits: stop uvicorn itself, as Cloud Run would.
        with suppress(IndexError, OSError):  # uvicorn has already gone
            self.sigterm()
        super().stop()


def _spawn(
    venv: Path, project: Path, argv: list[str], log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    path = f"{venv / 'bin'}:{os.environ['PATH']}"
    base = {"PATH": path, "HOME": str(Path.home()), "LANG": "C.UTF-8"}
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, cwd=project, env=base | env, stdout=out, stderr=subprocess.STDOUT
        )


class Processes:
    """Starts processes; `close` stops every one and feeds its log to the leak scan."""

    def __init__(self, project: Path, venv: Path, logs: Path, scan: LeakScan) -> None:
        self.project, self.venv, self.logs, self.scan = project, venv, logs, scan
        self.started: list[Process] = []
        require(shutil.which("unshare") is not None, "util-linux's unshare runs uvicorn as PID 1")

    def service(self, name: str, **env: str) -> Service:
        port = free_port()
        argv = ["unshare", "--pid", "--fork", "--kill-child", *dockerfile_command(self.project)]
        log = self.logs / f"{name}.log"
        popen = _spawn(self.venv, self.project, argv, log, {"PORT": str(port), **env})
        service = Service(name, popen, log, port)
        self.started.append(service)
        wait_for(f"{service.url}/health", 200)
        return service

    def fake(self, name: str, module: str, *args: str, port: int | None = None) -> Process:
        """`python -m tests.fakes.<module> --port N ARGS` from the baked repo; waits for it.

        `port`: a fixed one, e.g. to start a stopped fake again where its clients expect it.
        """
        port = port or free_port()
        argv = ["python", "-m", f"tests.fakes.{module}", "--port", str(port), *args]
        log = self.logs / f"{name}.log"
        process = Process(name, _spawn(self.venv, self.project, argv, log, {}), log, port)
        self.started.append(process)
        deadline = time.monotonic() + 30
        while not port_open(port):
            assert process.alive(), f"{name} exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{name} did not listen in 30 s"
            time.sleep(0.05)
        return process

    def close(self) -> None:
        for process in self.started:
            process.stop()
        for process in self.started:
            self.scan.feed_file(process.name, process.log)


@contextmanager
def processes(project: Path, venv: Path, logs: Path, scan: LeakScan) -> Iterator[Processes]:
    started = Processes(project, venv, logs, scan)
    try:
        yield started
    finally:
        started.close()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_entries(log: Path) -> list[dict[str, Any]]:
    """The service's log lines, each parsed as the JSON object it must be."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


# ERROR lines that are the operator's report of an injected upstream fault (a rejected key).
UPSTREAM_REPORTS = "app.core.openai_client"


def crashes(log: Path) -> list[str]:
    """Log lines that report an unhandled error (a 500 with its traceback)."""
    entries = log_entries(log)
    return [
        e["message"]
        for e in entries
        if "stack_trace" in e or (e["severity"] == "ERROR" and e["logger"] != UPSTREAM_REPORTS)
    ]


def service_env(upstream: Process, timeout: float) -> dict[str, str]:
    """The service in front of the fake upstream, with the leak scan's canary as its key."""
    return {
        "OPENAI_API_KEY": OPENAI_TEST_KEY,
        "OPENAI_BASE_URL": f"{upstream.url}/v1",
        "OPENAI_TIMEOUT_SECONDS": str(timeout),
        # No client-side retries: each fault reaches the caller once (a retried 429 would wait
        # out its 7 s Retry-After), so every answer can be checked against its fault.
        "OPENAI_MAX_RETRIES": "0",
        # All load comes from 127.0.0.1: the per-client limit is not what is measured here.
        "RATE_LIMIT_PER_MINUTE": "100000000",
        # The fuzzer reads the schema from /openapi.json, which is off unless asked for.
        "DOCS_ENABLED": "1",
    }


@pytest.fixture(scope="module")
def started(
    default_project: Path,
    service_venv: Callable[[Path], Path],
    tmp_path_factory: pytest.TempPathFactory,
    leak_scan: LeakScan,
) -> Iterator[Processes]:
    """The default bake's processes for one test module, all stopped and scanned at its end."""
    logs = tmp_path_factory.mktemp("process-logs")
    with processes(default_project, service_venv(default_project), logs, leak_scan) as started:
        yield started


@pytest.fixture(scope="module")
def upstream(started: Processes) -> Process:
    timing = ("--slow-seconds", str(SLOW_SECONDS), "--drip-seconds", str(DRIP_SECONDS))
    return started.fake("fake-openai", "openai_upstream", *timing)
