"""The fake upstream also runs as a process, for benchmarks and load tests."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

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
