"""The HTTP surface fuzzed with schemathesis against the running service's own OpenAPI schema.

The schemathesis CLI runs every phase it has (schema examples, boundary coverage, undeclared
methods, random fuzzing) with a fixed seed and bounded examples, and all its checks: every
response must match the documented status, content type and schema, and invalid requests must be
refused. Its HAR report holds every exchange, from which the statuses are counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.leaks import LeakScan
from tests.processes import Process, Processes, crashes, service_env, wait_for
from tests.reliability_report import record

pytestmark = pytest.mark.slow

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
FUZZ_HOOKS = Path(__file__).parent / "fixtures" / "fuzz_hooks.py"  # the one rule no schema states
MAX_EXAMPLES = 60
# 5xx the contract allows: the upstream mappings (502, 504) and a key not available (503).
UPSTREAM_MAPPINGS = {502, 503, 504}


def test_fuzzed_requests_get_documented_answers_and_never_a_server_error(
    started: Processes, upstream: Process, tmp_path: Path, leak_scan: LeakScan
) -> None:
    """Every generated request gets an answer its schema documents; nothing is a 5xx beyond
    the upstream mappings, no schema-violating request is accepted, nothing is logged as a
    crash."""
    service = started.service("service-fuzz", **service_env(upstream, timeout=5))
    wait_for(f"{service.url}/ready", 200)
    har = tmp_path / "fuzz.har"
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{service.url}/openapi.json",
            *("--checks", "all", "--exclude-checks", "not_a_server_error"),  # asserted below
            *("--max-examples", str(MAX_EXAMPLES), "--seed", "1", "--request-timeout", "10"),
            *("--report", "har", "--report-har-path", str(har), "--no-color"),
            *("--output-sanitize", "false"),  # nothing secret is sent; keep failures readable
        ],
        cwd=tmp_path,  # where it keeps its example database
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(FUZZ_HOOKS)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    leak_scan.feed("schemathesis output", result.stdout + result.stderr)
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    statuses = Counter(entry["response"]["status"] for entry in entries)
    server_errors = {s: n for s, n in statuses.items() if s >= 500 and s not in UPSTREAM_MAPPINGS}
    record(
        "fuzz",
        {
            "requests": len(entries),
            "faults_injected": 0,  # a healthy upstream: every error is the request's own
            "by_status": {str(k): v for k, v in sorted(statuses.items())},
            "failures": 0 if result.returncode == 0 else result.stdout.count("Test Case ID"),
            "crashes": len(crashes(service.log)),
            "max_examples_per_phase": MAX_EXAMPLES,
        },
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert len(entries) > 50
    assert server_errors == {}
    assert crashes(service.log) == []
