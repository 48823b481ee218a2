"""Leak scan: every log the template tests capture is searched for the keys the tests hand out.

A pytest plugin (conftest: `pytest_plugins = ["tests.leaks"]`). Tests that run the service, a
container or deploy.sh give their keys distinctive values from here (or `register` their own)
and feed what the processes wrote to the `leak_scan` fixture. A hit fails the test that fed it
and, in case that failure is swallowed, the session; the totals feed docs/reliability.md.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability_report import record

# Canaries: random-looking, so a hit can only mean the key itself travelled into a log. The
# OpenAI one is shaped like a real key (sk-...), the others are not, so a clean log proves the
# key was never printed, not merely that a key-shaped pattern was redacted.
OPENAI_TEST_KEY = "sk-test-canary-9c41e07b5a2d4f38b6e1"
SECRET_MANAGER_TEST_KEY = "sk-sm-canary-4b7d21f0e93a6c85"  # noqa: S105 - a test canary
CLIENT_TEST_KEY = "client-canary-d3f8a61b07c2e945"


@dataclass
class LeakScan:
    """The keys to look for, and what was scanned so far."""

    keys: dict[str, str] = field(default_factory=dict)
    sources: int = 0
    lines: int = 0
    hits: list[str] = field(default_factory=list)

    def register(self, name: str, key: str) -> None:
        """Look for `key` too (a test that derives its own, e.g. per session)."""
        self.keys[name] = key

    def _needles(self) -> dict[str, str]:
        # The key, and its base64 form: what a logged HTTP body (Secret Manager's payload) holds.
        needles = {}
        for name, key in self.keys.items():
            needles[key] = name
            needles[base64.b64encode(key.encode()).decode()] = f"{name} (base64)"
        return needles

    def feed(self, source: str, text: str | bytes) -> None:
        """Scan `text` (what `source` wrote); a key in it fails the calling test at once."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        needles = self._needles()
        found = []
        for number, line in enumerate(text.splitlines(), 1):
            found += [f"{source}:{number}: {name}" for key, name in needles.items() if key in line]
        self.sources += 1
        self.lines += len(text.splitlines())
        self.hits += found
        # The names of the keys and where they appeared; never the lines, which hold the keys.
        assert not found, f"test keys in logs: {found}"

    def feed_file(self, source: str, path: Path) -> None:
        self.feed(source, path.read_bytes() if path.exists() else b"")


SCAN = LeakScan(
    keys={
        "OPENAI_TEST_KEY": OPENAI_TEST_KEY,
        "SECRET_MANAGER_TEST_KEY": SECRET_MANAGER_TEST_KEY,
        "CLIENT_TEST_KEY": CLIENT_TEST_KEY,
    }
)


@pytest.fixture(scope="session")
def leak_scan() -> LeakScan:
    return SCAN


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if SCAN.sources:
        figures = {"sources": SCAN.sources, "lines": SCAN.lines, "hits": len(SCAN.hits)}
        # How much of the suite ran: the page is meant to be rendered after a full `make test`.
        record("leak_scan", figures | {"tests_collected": session.testscollected})
    if SCAN.hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SCAN.sources:
        terminalreporter.write_line(
            f"leak scan: {SCAN.lines} log lines from {SCAN.sources} sources, "
            f"{len(SCAN.hits)} test keys found"
        )
