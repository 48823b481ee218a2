"""The service under uvicorn, as its own process, against the fake upstream as another: the
production retry setting, the time budget, and a key rotated by a new mounted secret version."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CLIENT_KEY
from tests.fakes.server import serve_process

ROOT = Path(__file__).resolve().parents[1]
OLD_KEY, NEW_KEY = "sk-process-old-000000", "sk-process-new-111111"
TIMEOUT = 2.0  # OPENAI_TIMEOUT_SECONDS of the service under test


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "key"
    path.write_text(OLD_KEY + "\n")
    return path


@pytest.fixture(scope="module")
def service(key_file: Path) -> Iterator[str]:
    """The upstream only takes NEW_KEY; the service starts with OLD_KEY in its key file."""
    upstream_args = ["tests.fakes.openai_upstream", "--slow-seconds", "5"]
    with serve_process([*upstream_args, "--expected-key", NEW_KEY], ROOT) as upstream:
        env = {
            "OPENAI_API_KEY": "",
            "OPENAI_API_KEY_FILE": str(key_file),
            "OPENAI_BASE_URL": f"{upstream}/v1",
            "OPENAI_TIMEOUT_SECONDS": str(TIMEOUT),
            "OPENAI_MAX_RETRIES": "",  # the production default
            "CLIENT_API_KEYS": CLIENT_KEY,
            "RATE_LIMIT_PER_MINUTE": "100000",
            "LOG_LEVEL": "WARNING",
        }
        with serve_process(["uvicorn", "app.main:app"], ROOT, env, "/health") as url:
            yield url


def post(url: str, message: str, stream: bool = False) -> tuple[httpx.Response, float]:
    headers = {"X-API-Key": CLIENT_KEY}
    started = time.monotonic()
    body = {"message": message, "stream": stream}
    response = httpx.post(f"{url}/v1/chat", json=body, headers=headers, timeout=30)
    return response, time.monotonic() - started


def test_a_key_swapped_in_the_mounted_file_is_used_after_the_next_401(
    service: str, key_file: Path
) -> None:
    rejected, _ = post(service, "hi")
    assert rejected.status_code == 502
    assert rejected.json()["error"]["code"] == "upstream_auth"
    key_file.write_text(NEW_KEY + "\n")  # what a new version of a mounted secret does
    answered, _ = post(service, "hi")
    assert answered.status_code == 200, answered.text
    assert answered.json()["reply"] == "echo: hi"


def test_an_upstream_429_reaches_the_caller_at_once(service: str, key_file: Path) -> None:
    key_file.write_text(NEW_KEY + "\n")
    response, seconds = post(service, "fault:429")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert seconds < 1, f"the caller waited {seconds:.2f} s for the 429"


def test_a_stalled_upstream_is_a_504_within_the_budget(service: str, key_file: Path) -> None:
    key_file.write_text(NEW_KEY + "\n")
    response, seconds = post(service, "fault:slow")
    assert response.status_code == 504
    assert TIMEOUT <= seconds < TIMEOUT + 0.8, f"504 after {seconds:.2f} s"


def test_a_stream_whose_upstream_stalls_ends_with_a_timeout_event(
    service: str, key_file: Path
) -> None:
    key_file.write_text(NEW_KEY + "\n")
    response, seconds = post(service, "fault:stall", stream=True)
    last = json.loads(response.text.strip().splitlines()[-1].removeprefix("data: "))
    assert last["error"]["code"] == "upstream_timeout"
    assert seconds < TIMEOUT + 0.8
