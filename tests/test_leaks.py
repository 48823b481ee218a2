"""The leak scan itself (a fresh instance: the session's own must stay clean) and the report."""

from __future__ import annotations

import base64

import pytest

from tests.leaks import OPENAI_TEST_KEY, LeakScan
from tests.reliability_report import render


def scan() -> LeakScan:
    return LeakScan(keys={"OPENAI_TEST_KEY": OPENAI_TEST_KEY})


def test_a_key_in_a_log_line_fails_and_is_counted_without_echoing_the_key() -> None:
    leaks = scan()
    with pytest.raises(AssertionError) as failure:
        leaks.feed("service.log", f'{{"message": "ok"}}\n{{"message": "key {OPENAI_TEST_KEY}"}}\n')
    assert leaks.hits == ["service.log:2: OPENAI_TEST_KEY"]
    assert OPENAI_TEST_KEY not in str(failure.value)


def test_a_base64_encoded_key_is_a_leak_too() -> None:
    """What a logged Secret Manager response body would hold."""
    leaks = scan()
    with pytest.raises(AssertionError):
        leaks.feed("sm.log", base64.b64encode(OPENAI_TEST_KEY.encode()))
    assert len(leaks.hits) == 1


def test_clean_logs_are_counted() -> None:
    leaks = scan()
    leaks.feed("a", "one\ntwo\n")
    leaks.feed("b", b"sk-...redacted\n")
    assert (leaks.sources, leaks.lines, leaks.hits) == (2, 3, [])


def test_report_renders_each_recorded_run_as_a_table() -> None:
    page = render({"load": {"requests": 2000, "by_status": {"200": 1500, "502": 500}}})
    assert "## Load with upstream faults" in page
    assert "| requests | 2000 |" in page
    assert "| by_status | 200: 1500, 502: 500 |" in page
    assert "SIGTERM" not in page  # runs that did not happen are not invented
