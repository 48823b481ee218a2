"""The fake upstream also runs as a process, for benchmarks and load tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import FAULTS, FakeOpenAI
from tests.fakes.server import serve_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "ping"}]}),
        ("/v1/responses", {"model": "m", "input": [{"role": "user", "content": "ping"}]}),
    ],
)
def test_runs_as_a_module_and_answers_both_apis(path: str, body: dict[str, object]) -> None:
    with serve_process(["tests.fakes.openai_upstream"], ROOT, probe="/v1/models") as url:
        answer = httpx.post(url + path, json=body, timeout=5).json()
    if path == "/v1/responses":
        assert answer["output"][0]["content"][0]["text"] == "echo: ping"
        assert answer["usage"]["output_tokens"] == 2
    else:
        assert answer["choices"][0]["message"]["content"] == "echo: ping"
        assert answer["usage"]["completion_tokens"] == 2


def test_a_process_can_require_one_key() -> None:
    args = ["tests.fakes.openai_upstream", "--expected-key", "sk-right-000000"]
    body = {"model": "m", "input": "ping"}
    with serve_process(args, ROOT, probe="/v1/models") as url:
        wrong = httpx.post(f"{url}/v1/responses", json=body, headers={"Authorization": "Bearer x"})
        right = httpx.post(
            f"{url}/v1/responses", json=body, headers={"Authorization": "Bearer sk-right-000000"}
        )
    assert wrong.status_code == 401
    assert right.status_code == 200


# What each fault answers before any body, the same on both APIs (None: the connection drops).
FAULT_STATUS = {"401": 401, "429": 429, "quota": 429, "500": 500, "500-once": 500}
FAULT_STATUS |= {"drop": None, "cut-stream": None}
API_BODIES = {
    "/v1/responses": lambda text: {"model": "m", "input": [{"role": "user", "content": text}]},
    "/v1/chat/completions": lambda text: {
        "model": "m",
        "messages": [{"role": "user", "content": text}],
    },
}


def expected_status(fault: str, path: str, stream: bool) -> int | None:
    if fault in {"failed", "error"} and not stream:
        # Only Responses has a failed response object; otherwise the failure is an error status.
        return 200 if (fault, path) == ("failed", "/v1/responses") else 500
    return FAULT_STATUS.get(fault, 200)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(slow_seconds=0.01, drip_seconds=0).serve() as server:
        yield server


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("path", list(API_BODIES))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_fault_is_spoken_by_both_apis(
    fake: FakeOpenAI, fault: str, path: str, stream: bool
) -> None:
    fake.reset()
    body = {**API_BODIES[path](f"fault:{fault}"), "stream": stream}
    expected = expected_status(fault, path, stream)
    try:
        response = httpx.post(fake.base_url.removesuffix("/v1") + path, json=body, timeout=5)
    except httpx.TransportError:
        assert expected is None
        return
    assert response.status_code == (200 if expected is None else expected)
    if fault == "429":
        assert response.headers["retry-after"] == "7"
    if fault == "quota":
        assert response.json()["error"]["code"] == "insufficient_quota"
    assert fake.dialects[0].path == path
