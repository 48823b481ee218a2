"""The guard over every /v1 operation of a running api-key service (the Dockerfile's CMD under
uvicorn on 127.0.0.1, the fake OpenAI behind it): the operations come from the service's own
/openapi.json, so a route added to the template is probed too.

The scenario that once passed unnoticed, 70 calls without a key on each operation, now gets
401 then 429 and never reaches a route; a valid key gets the per-key limit, then 429.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Bake
from tests.leaks import LeakScan
from tests.processes import Service, get, log_entries, processes, service_env, wait_for

pytestmark = pytest.mark.slow

CLIENT_KEY = "guard-process-client-key-0123456789"
LIMIT = 5
UNAUTHENTICATED_CALLS = 70


def call(url: str, method: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    body = json.dumps({"message": "hi"}).encode() if method in ("POST", "PUT", "PATCH") else None
    request = urllib.request.Request(  # noqa: S310 - 127.0.0.1 only
        url, data=body, method=method, headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}


@pytest.fixture(scope="module")
def service(
    bake_once: Bake,
    service_venv: Callable[[Path], Path],
    tmp_path_factory: pytest.TempPathFactory,
    leak_scan: LeakScan,
) -> Iterator[Service]:
    leak_scan.register("guard test client key", CLIENT_KEY)
    project = bake_once(client_auth="api-key")
    logs = tmp_path_factory.mktemp("guard-process-logs")
    with processes(project, service_venv(project), logs, leak_scan) as started:
        upstream = started.fake("fake-openai", "openai_upstream")
        env = service_env(upstream, timeout=5) | {
            "CLIENT_API_KEYS": CLIENT_KEY,
            "RATE_LIMIT_PER_MINUTE": str(LIMIT),
        }
        service = started.service("service-guard", **env)
        wait_for(f"{service.url}/ready", 200)
        yield service


def operations(service: Service) -> list[tuple[str, str]]:
    """(method, concrete path) of every operation under /v1 in the service's schema."""
    status, schema = get(f"{service.url}/openapi.json")
    assert status == 200
    found = [
        (method.upper(), re.sub(r"\{[^}]+\}", "1", path))
        for path, item in schema["paths"].items()
        if path == "/v1" or path.startswith("/v1/")
        for method in item
    ]
    assert found
    return found


def test_seventy_calls_without_a_key_are_refused_then_limited_on_every_operation(
    service: Service,
) -> None:
    statuses: Counter[int] = Counter()
    for method, path in operations(service):
        for _ in range(UNAUTHENTICATED_CALLS):
            statuses[call(service.url + path, method, {})[0]] += 1
    assert set(statuses) <= {401, 429}, statuses
    assert statuses[401] >= LIMIT  # refused, then limited: guessing is rate limited too
    refused = [e for e in log_entries(service.log) if e["message"] == "client key refused"]
    assert len(refused) == statuses[401]  # one WARNING per refusal; the rate limited are not
    assert {e["severity"] for e in refused} == {"WARNING"}


def test_a_valid_key_gets_the_per_key_limit_on_every_operation(service: Service) -> None:
    """The key is the bucket, shared by every operation: LIMIT calls spread over them are
    served, then each operation answers 429 with Retry-After."""
    found = operations(service)
    headers = {"X-API-Key": CLIENT_KEY}
    served = [
        call(service.url + found[n % len(found)][1], found[n % len(found)][0], headers)[0]
        for n in range(LIMIT)
    ]
    assert not {401, 429} & set(served), served
    for method, path in found:
        status, answer_headers = call(service.url + path, method, headers)
        assert status == 429, (method, path)
        assert int(answer_headers["retry-after"]) >= 1
