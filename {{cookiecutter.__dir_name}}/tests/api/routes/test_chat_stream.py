"""POST /v1/chat with `"stream": true`: deltas, a summary, and honest ends for broken streams."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.api.routes.chat_calls import THREE_TURNS, WHOLE, chat, events, text_of
from tests.conftest import Env, MakeClient
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import serve_in_thread


def test_streams_deltas_then_a_summary_then_done(client: TestClient, auth: dict[str, str]) -> None:
    response = chat(client, auth, message="one two", stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    received = events(response)
    assert text_of(received) == "echo: one two"
    assert received[-1] == "[DONE]"
    done = received[-2]["done"]
    assert done["finish_reason"] == WHOLE
    assert done["usage"]["output_tokens"] == 3
    assert all(set(event) == {"delta"} for event in received[:-2])


def test_a_streamed_conversation_reaches_the_upstream_like_a_json_one(
    client: TestClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    chat(client, auth, messages=THREE_TURNS, stream=True)
    assert fake_openai.requests[0]["stream"] is True
    assert fake_openai.turns_sent()[1:] == THREE_TURNS


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("fault:cut-stream", "upstream_unreachable"),  # the connection dropped mid-answer
        ("fault:truncated", "upstream_incomplete"),  # a clean end, but no finish
        ("fault:malformed", "upstream_error"),  # a chunk that is not JSON
        ("fault:failed", "upstream_error"),  # a failed response / an error chunk
        ("fault:error", "upstream_error"),  # an error event
    ],
)
def test_a_stream_that_does_not_finish_ends_with_an_error_event_never_done(
    client: TestClient, auth: dict[str, str], message: str, code: str
) -> None:
    received = events(chat(client, auth, message=message, stream=True))
    assert "[DONE]" not in received
    assert not any("done" in event for event in received if isinstance(event, dict))
    assert set(received[-1]) == {"error"}
    assert received[-1]["error"]["code"] == code


def test_a_stream_stopped_by_the_cap_ends_with_an_error_event(
    client: TestClient, auth: dict[str, str]
) -> None:
    received = events(chat(client, auth, message="one two three", max_tokens=2, stream=True))
    assert text_of(received) == "echo: one"
    assert received[-1]["error"]["code"] == "output_limit_reached"
    assert "[DONE]" not in received


def test_a_stream_stopped_by_the_cap_still_logs_the_tokens_it_used(
    client: TestClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """What a token budget settles with: the usage the upstream reported before it stopped."""
    chat(client, auth, message="one two three", max_tokens=2, stream=True)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    usage = next(line for line in lines if line["message"] == "chat completion")
    assert usage["aborted"] is True
    assert usage["output_tokens"] == 2
    assert usage["error"] == "output_limit_reached"


def test_a_stream_whose_first_event_is_late_ends_with_a_timeout_event(
    client: TestClient, auth: dict[str, str]
) -> None:
    """The fake stalls 2 s before its first event; OPENAI_TIMEOUT_SECONDS is 1 here."""
    started = time.monotonic()
    received = events(chat(client, auth, message="fault:stall", stream=True))
    assert received[-1]["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 1.9


def test_a_stream_is_cut_at_the_request_deadline_with_an_error_event(
    make_client: MakeClient, auth: dict[str, str]
) -> None:
    """REQUEST_TIMEOUT_SECONDS=6 leaves 1 s to a 3 s drip stream: an error, not Cloud Run's cut."""
    client = make_client(REQUEST_TIMEOUT_SECONDS="6")
    started = time.monotonic()
    received = events(chat(client, auth, message="fault:drip", stream=True))
    assert text_of(received).startswith("echo:")
    assert received[-1]["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 2


def test_a_silent_upstream_gets_keep_alive_comments(
    make_client: MakeClient, auth: dict[str, str]
) -> None:
    client = make_client(SSE_KEEPALIVE_SECONDS="0.3", OPENAI_TIMEOUT_SECONDS="5")
    response = chat(client, auth, message="fault:stall", stream=True)
    assert response.text.startswith(": keep-alive\n\n")
    assert response.text.count(": keep-alive") >= 3  # 2 s of silence
    assert events(response)[-1] == "[DONE]"


def test_an_aborted_stream_logs_what_was_seen(
    client: TestClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    chat(client, auth, message="fault:cut-stream", stream=True)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    usage = [line for line in lines if line["message"] == "chat completion"]
    assert len(usage) == 1
    assert usage[0]["aborted"] is True
    assert usage[0]["seen"] == {"events": 1, "chars": len("partial")}
    assert usage[0]["error"] == "upstream_unreachable"
    assert usage[0]["client"]


def test_a_whole_stream_logs_its_usage_and_finish(
    client: TestClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    chat(client, auth, message="count these", stream=True)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    usage = next(line for line in lines if line["message"] == "chat completion")
    assert usage["aborted"] is False
    assert usage["finish_reason"] == WHOLE
    assert usage["output_tokens"] == 3
    assert usage["upstream_latency_ms"] >= 0


@pytest.fixture
def served_app(env: Env) -> Iterator[str]:
    """The app under a real uvicorn, where a client can really disconnect."""
    env(SSE_KEEPALIVE_SECONDS="0.2", OPENAI_TIMEOUT_SECONDS="5")
    with serve_in_thread(create_app(), lifespan="on") as url:
        yield url


@pytest.mark.parametrize("message", ["fault:drip", "fault:stall"])
def test_client_disconnect_closes_the_upstream_stream(
    served_app: str,
    auth: dict[str, str],
    fake_openai: FakeOpenAI,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A client that goes away stops the upstream stream (no tokens paid for nobody), also
    while the upstream is silent."""
    body = {"message": message, "stream": True}
    with (
        httpx.Client(base_url=served_app, timeout=5) as http,
        http.stream("POST", "/v1/chat", json=body, headers=auth) as response,
    ):
        assert next(response.iter_lines()).startswith(("data: ", ": keep-alive"))
    disconnected = time.monotonic()
    while fake_openai.streams_closed < 1 and time.monotonic() - disconnected < 3:
        time.sleep(0.01)
    assert fake_openai.streams_opened == 1
    assert fake_openai.streams_closed == 1
    # The drip stream takes 3 s, the stall 2 s of silence: closing must not wait for either.
    assert time.monotonic() - disconnected < 1
    output = ""
    while '"chat completion"' not in output and time.monotonic() - disconnected < 3:
        time.sleep(0.05)  # the usage line follows the upstream's close
        output += capsys.readouterr().out
    usage = [json.loads(line) for line in output.splitlines() if '"chat completion"' in line]
    assert len(usage) == 1
    assert usage[0]["aborted"] is True
