"""Upstream failures: the same statuses on both APIs, retries within one budget, a log line each."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from tests.api.routes.chat_calls import chat
from tests.conftest import OPENAI_KEY, MakeClient
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("fault:401", (502, "upstream_auth")),
        ("fault:429", (429, "upstream_rate_limited")),
        ("fault:quota", (503, "upstream_quota_exhausted")),
        ("fault:500", (502, "upstream_error")),
        ("fault:failed", (502, "upstream_error")),
        ("fault:malformed", (502, "upstream_error")),
        ("fault:html", (502, "upstream_error")),
        ("fault:drop", (502, "upstream_unreachable")),
        ("fault:cut-stream", (502, "upstream_unreachable")),
        ("fault:slow", (504, "upstream_timeout")),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_maps_upstream_failures_to_json_errors(
    client: TestClient, auth: dict[str, str], fault: str, expected: tuple[int, str], stream: bool
) -> None:
    """Before the stream's 200 is sent a failure is its HTTP status, streamed or not; after it
    (a body that breaks) it is the stream's error event, with the same code."""
    status, code = expected
    response = chat(client, auth, message=fault, stream=stream)
    if stream and response.status_code == 200:
        last = response.text.strip().splitlines()[-1].removeprefix("data: ")
        assert json.loads(last)["error"]["code"] == code
        assert fault in {"fault:failed", "fault:malformed", "fault:drop", "fault:cut-stream"}
        return
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert "Traceback" not in response.text


def test_a_stream_whose_open_fails_with_a_5xx_is_retried(
    make_client: MakeClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client = make_client(OPENAI_MAX_RETRIES=None, OPENAI_TIMEOUT_SECONDS="5")
    response = chat(client, auth, message="fault:500-once", stream=True)
    assert response.text.rstrip().endswith("data: [DONE]")
    assert len(fake_openai.requests) == 2


def test_upstream_429_and_its_retry_after_reach_the_caller_at_once(
    make_client: MakeClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    """With the production retry setting: no waiting out Retry-After: 7 inside the request."""
    client = make_client(OPENAI_MAX_RETRIES=None)
    started = time.monotonic()
    response = chat(client, auth, message="fault:429")
    assert time.monotonic() - started < 1
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert len(fake_openai.requests) == 1


def test_a_5xx_is_retried_within_the_budget(
    make_client: MakeClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client = make_client(OPENAI_MAX_RETRIES=None, OPENAI_TIMEOUT_SECONDS="5")
    response = chat(client, auth, message="fault:500-once")
    assert response.status_code == 200
    assert len(fake_openai.requests) == 2


def test_a_lasting_5xx_is_retried_at_most_openai_max_retries_times(
    make_client: MakeClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client = make_client(OPENAI_MAX_RETRIES=None, OPENAI_TIMEOUT_SECONDS="5")
    assert chat(client, auth, message="fault:500").status_code == 502
    assert len(fake_openai.requests) == 3


def test_retries_never_outlast_the_budget(
    make_client: MakeClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    """A stalled upstream answers 504 after OPENAI_TIMEOUT_SECONDS, not a multiple of it."""
    client = make_client(OPENAI_MAX_RETRIES=None, OPENAI_TIMEOUT_SECONDS="1")
    started = time.monotonic()
    assert chat(client, auth, message="fault:slow").status_code == 504
    assert time.monotonic() - started < 1.5
    assert len(fake_openai.requests) == 1


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_rejected_openai_key_is_an_error_line_that_names_the_fix(
    client: TestClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    chat(client, auth, message="fault:401")
    output = capsys.readouterr().out
    assert OPENAI_KEY not in output
    failures = [json.loads(line) for line in output.splitlines() if "401" in line]
    assert len(failures) == 1
    line = failures[0]
    assert line["severity"] == "ERROR"
    # conftest sets OPENAI_API_KEY: an environment variable, which only a redeploy changes.
    assert "rotate it: OPENAI_API_KEY is fixed" in str(line["message"])
    assert line["status"] == 401
    assert line["error_code"] == "invalid_api_key"
    assert line["request_id"] == "req_fake_invalid_api_key"
    assert line["model"]
    assert line["client"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("fault:429", (429, "rate_limit_exceeded")), ("fault:quota", (429, "insufficient_quota")),
     ("fault:500", (500, "server_error"))],
)  # fmt: skip
def test_each_failed_upstream_call_is_one_warning_line(
    client: TestClient,
    auth: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    fault: str,
    expected: tuple[int, str],
) -> None:
    status, code = expected
    chat(client, auth, message=fault)
    failures = [line for line in log_lines(capsys) if line["severity"] == "WARNING"]
    assert len(failures) == 1
    assert failures[0]["status"] == status
    assert failures[0]["error_code"] == code
    assert failures[0]["request_id"] == f"req_fake_{code}"


def test_an_in_band_failure_is_a_warning_line_with_the_upstreams_code(
    client: TestClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    chat(client, auth, message="fault:error", stream=True)
    failures = [line for line in log_lines(capsys) if line["severity"] == "WARNING"]
    assert len(failures) == 1
    assert failures[0]["error_code"] == "upstream_error"
    assert failures[0]["upstream_code"] == "server_error"


def test_the_usage_line_names_the_client_finish_tokens_and_latency(
    client: TestClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    chat(client, auth, message="count these words")
    usage = [line for line in log_lines(capsys) if line["message"] == "chat completion"]
    assert len(usage) == 1
    assert usage[0]["client"]
    assert usage[0]["finish_reason"]
    assert usage[0]["output_tokens"] == 4
    assert isinstance(usage[0]["input_tokens"], int)
    assert float(str(usage[0]["upstream_latency_ms"])) >= 0
