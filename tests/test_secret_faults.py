"""Secret Manager failures, through the real google-cloud-secret-manager client (REST transport)
against the service's own Secret Manager stand-in run as a process.

One service process per fault, each reading its own secret; the stand-in's state is a file
(tests/fakes/secret_manager.py). Every payload is the leak scan's canary, so a payload or key in
any log line fails the run.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.leaks import SECRET_MANAGER_TEST_KEY, LeakScan
from tests.processes import Process, Processes, Service, get, log_entries
from tests.reliability_report import record

pytestmark = pytest.mark.slow

PROJECT = "sm-fault-project"
# secret -> what must appear in /ready's reason: the cause, and the command or role that fixes it.
FAULTS: dict[str, list[str]] = {
    "denied": ["permission denied", "roles/secretmanager.secretAccessor", "add-iam-policy-binding"],
    "missing": ["not found", f"project {PROJECT}", "gcloud secrets create missing"],
    "corrupt": ["CRC32C"],
    "empty": ["secret empty is empty"],
    "disabled": [
        "secret disabled version latest is in DISABLED state",
        "gcloud secrets versions enable VERSION --secret=disabled",
    ],
}
UNAVAILABLE_READS = 2
STATE = {
    "secrets": {
        f"{PROJECT}/{name}/latest": "" if name == "empty" else SECRET_MANAGER_TEST_KEY
        for name in ("flaky", "denied", "corrupt", "empty", "disabled")
    },
    "forbidden": [f"{PROJECT}/denied/latest"],
    "corrupt": [f"{PROJECT}/corrupt/latest"],
    "disabled": [f"{PROJECT}/disabled/latest"],
    "unavailable": {f"{PROJECT}/flaky/latest": UNAVAILABLE_READS},
}


@pytest.fixture(scope="module")
def secret_manager(started: Processes) -> Process:
    state = started.logs / "state.json"
    state.write_text(json.dumps(STATE))
    return started.fake("fake-secret-manager", "secret_manager", "--state", str(state))


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, tuple[int, str, int]]]:
    """secret -> (/ready status, reason, crashes logged); recorded for the report at the end."""
    found: dict[str, tuple[int, str, int]] = {}
    yield found
    statuses = Counter(str(status) for status, _, _ in found.values())
    record(
        "secret_manager",
        {
            "requests": len(found),  # one service start, each reading its own secret
            "faults_injected": UNAVAILABLE_READS + len(FAULTS),
            "by_status": dict(sorted(statuses.items())),
            "crashes": sum(crashes for _, _, crashes in found.values()),
            "reasons": {secret: reason for secret, (_, reason, _) in found.items()},
        },
    )


def service_for(started: Processes, secret_manager: Process, secret: str) -> Service:
    return started.service(
        f"service-secret-{secret}",
        GOOGLE_CLOUD_PROJECT=PROJECT,
        SECRET_MANAGER_EMULATOR_HOST=f"127.0.0.1:{secret_manager.port}",
        OPENAI_API_KEY_SECRET=secret,
    )


def settled(service: Service, seconds: float = 30) -> tuple[int, Any]:
    """/ready once the key is resolved or has failed (no longer "starting"), within `seconds`."""
    deadline = time.monotonic() + seconds
    while (answer := get(f"{service.url}/ready"))[1].get("reason") == "starting":
        assert time.monotonic() < deadline, f"/ready still says starting after {seconds} s"
        time.sleep(0.1)
    return answer


def tracebacks(service: Service) -> int:
    return sum("stack_trace" in entry for entry in log_entries(service.log))


def test_key_loads_after_secret_manager_is_unavailable_twice(
    started: Processes, secret_manager: Process, outcomes: dict[str, tuple[int, str, int]]
) -> None:
    """UNAVAILABLE, UNAVAILABLE, then the secret: the client's retries get it, /ready turns 200
    within the bound that /v1/chat waits for the key."""
    service = service_for(started, secret_manager, "flaky")
    status, body = settled(service, seconds=10)  # the wait /v1/chat allows (KEY_WAIT_SECONDS)
    outcomes["flaky"] = (status, "ready after UNAVAILABLE twice", tracebacks(service))
    assert (status, body) == (200, {"status": "ready"})
    assert tracebacks(service) == 0


@pytest.mark.parametrize("secret", FAULTS)
def test_secret_fault_makes_ready_503_with_an_actionable_reason(
    started: Processes,
    secret_manager: Process,
    leak_scan: LeakScan,
    outcomes: dict[str, tuple[int, str, int]],
    secret: str,
) -> None:
    """The service keeps serving /health, answers /ready 503 with a reason that names the cause
    and the fix, and logs that reason once as an ERROR, without the payload."""
    service = service_for(started, secret_manager, secret)
    status, body = settled(service)
    leak_scan.feed(f"/ready of {service.name}", json.dumps(body))
    outcomes[secret] = (status, body.get("reason", ""), tracebacks(service))
    assert status == 503
    assert body["status"] == "not ready"
    for fragment in FAULTS[secret]:
        assert fragment in body["reason"]
    assert get(f"{service.url}/health") == (200, {"status": "ok"})
    errors = [e["message"] for e in log_entries(service.log) if e["severity"] == "ERROR"]
    assert errors == [body["reason"]]
    assert tracebacks(service) == 0
