"""JSON log lines in Cloud Logging's shape, with trace correlation and redaction."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.logging import configure_logging, redact, redact_value, trace_from_headers
from tests.conftest import OPENAI_KEY, MakeClient

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_every_line_is_json_with_severity_message_and_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "demo-project", access_log=False)
    logging.getLogger("app.test").warning("disk %s", "full")
    (line,) = log_lines(capsys)
    assert line["severity"] == "WARNING"
    assert line["message"] == "disk full"
    assert line["time"].endswith("+00:00")


def test_parses_w3c_traceparent() -> None:
    header = f"00-{TRACE}-00f067aa0ba902b7-01"
    assert trace_from_headers(header, None) == (TRACE, "00f067aa0ba902b7")


def test_parses_cloud_trace_context_with_a_decimal_span() -> None:
    assert trace_from_headers(None, f"{TRACE}/1;o=1") == (TRACE, "0000000000000001")
    assert trace_from_headers(None, TRACE) == (TRACE, None)
    assert trace_from_headers("garbage", "also garbage") is None


def test_request_lines_carry_the_trace_of_the_request(
    client: TestClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    client.post(
        "/v1/chat",
        json={"message": "hi"},
        headers={**auth, "X-Cloud-Trace-Context": f"{TRACE}/17;o=1"},
    )
    (usage,) = [line for line in log_lines(capsys) if line["message"] == "chat completion"]
    assert usage["logging.googleapis.com/trace"].endswith(f"/traces/{TRACE}")
    assert usage["logging.googleapis.com/trace"].startswith("projects/")
    assert usage["logging.googleapis.com/spanId"] == f"{17:016x}"


def test_keys_never_reach_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "demo-project", access_log=False)
    redact_value("registered-secret-value")
    logger = logging.getLogger("app.test")
    logger.info("key %s and sk-proj-abcdef123456 and registered-secret-value", OPENAI_KEY)
    out = capsys.readouterr().out
    assert OPENAI_KEY not in out
    assert "sk-proj-abcdef123456" not in out
    assert "registered-secret-value" not in out
    assert out.count("[REDACTED]") == 3


def test_access_log_is_off_by_default_and_json_when_on(
    make_client: MakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    make_client()
    access = logging.getLogger("uvicorn.access")
    assert access.disabled
    # What uvicorn checks before it formats an access line for every response.
    assert not access.hasHandlers()
    make_client(ACCESS_LOG="1")
    assert access.hasHandlers()
    capsys.readouterr()
    access.info('%s - "%s %s HTTP/%s" %d', "10.0.0.1:5000", "GET", "/health", "1.1", 200)
    (line,) = log_lines(capsys)
    assert line["httpRequest"] == {
        "requestMethod": "GET",
        "requestUrl": "/health",
        "protocol": "HTTP/1.1",
        "status": 200,
        "remoteIp": "10.0.0.1",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("task-runner started", "task-runner started"),
        ("disk-usage-report and mask-layer", "disk-usage-report and mask-layer"),
        ("key sk-proj-abcdef123456 leaked", "key [REDACTED] leaked"),
        ("(sk-abcdefgh)", "([REDACTED])"),
        ('"sk-live_0123456789"', '"[REDACTED]"'),
        ("Bearer sk-abcdefghij", "Bearer [REDACTED]"),
    ],
)
def test_redaction_matches_whole_keys_only(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_span_beyond_64_bits_or_zero_ids_carry_no_span_or_no_trace() -> None:
    assert trace_from_headers(None, f"{TRACE}/{2**64 - 1}") == (TRACE, "f" * 16)
    assert trace_from_headers(None, f"{TRACE}/{2**64}") == (TRACE, None)
    assert trace_from_headers(None, f"{TRACE}/0;o=1") == (TRACE, None)
    assert trace_from_headers(None, f"{'0' * 32}/1") is None
    assert trace_from_headers(f"00-{'0' * 32}-00f067aa0ba902b7-01", None) is None
    assert trace_from_headers(None, f"{TRACE}/{'9' * 5000}") is None
