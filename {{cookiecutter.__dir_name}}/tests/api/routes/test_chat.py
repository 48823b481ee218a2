"""POST /v1/chat against a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api.errors import SHOW_NOT_READY_DETAIL
from app.core.config import DEFAULT_MODEL
from app.main import create_app
from tests.conftest import Env, MakeClient
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import serve_in_thread


def chat(client: TestClient, auth: dict[str, str], **body: object) -> httpx.Response:
    return client.post("/v1/chat", json=body, headers=auth)


def events(response: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in response.text.splitlines() if line]


def test_replies_with_the_configured_model(
    client: TestClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    response = chat(client, auth, message="hello there")
    assert response.status_code == 200
    assert response.json() == {"reply": "echo: hello there", "model": DEFAULT_MODEL}
    assert fake_openai.requests[0]["model"] == DEFAULT_MODEL
    assert fake_openai.requests[0]["messages"] == [{"role": "user", "content": "hello there"}]


def test_sends_the_system_prompt_first(
    client: TestClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    chat(client, auth, message="hi", system="be brief")
    roles = [m["role"] for m in fake_openai.requests[0]["messages"]]
    assert roles == ["system", "user"]


def test_model_comes_from_the_environment(
    make_client: MakeClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client = make_client(OPENAI_MODEL="other-model")
    assert chat(client, auth, message="hi").json()["model"] == "other-model"


@pytest.mark.parametrize(("asked", "sent"), [(None, 50), (10, 10), (50, 50), (5000, 50)], ids=str)
def test_max_tokens_never_exceeds_the_configured_cap(
    make_client: MakeClient,
    auth: dict[str, str],
    fake_openai: FakeOpenAI,
    asked: int | None,
    sent: int,
) -> None:
    client = make_client(OPENAI_MAX_TOKENS="50")
    body = {"message": "hi"} if asked is None else {"message": "hi", "max_tokens": asked}
    assert chat(client, auth, **body).status_code == 200
    assert fake_openai.requests[0]["max_completion_tokens"] == sent


def test_streams_deltas_then_done(
    client: TestClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    response = chat(client, auth, message="one two", stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    received = events(response)
    assert received[-1] == "[DONE]"
    deltas = "".join(json.loads(event)["delta"] for event in received[:-1])
    assert deltas == "echo: one two"
    assert fake_openai.requests[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"message": ""}, "invalid_request"),
        ({"message": "hi", "max_tokens": 0}, "invalid_request"),
        ({"message": "x" * 8001}, "message_too_long"),
        ({"message": "hi", "system": "x" * 8001}, "message_too_long"),
    ],
    ids=["missing-message", "empty", "zero-tokens", "long-message", "long-system"],
)
def test_rejects_invalid_bodies_with_422(
    client: TestClient,
    auth: dict[str, str],
    fake_openai: FakeOpenAI,
    body: dict[str, object],
    code: str,
) -> None:
    response = client.post("/v1/chat", json=body, headers=auth)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert fake_openai.requests == []


def test_rejects_bodies_over_one_mebibyte_with_413(
    client: TestClient, auth: dict[str, str]
) -> None:
    payload = json.dumps({"message": "x" * (1 << 20)})
    response = client.post(
        "/v1/chat", content=payload, headers={**auth, "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_rejects_chunked_bodies_over_one_mebibyte_with_413(
    client: TestClient, auth: dict[str, str]
) -> None:
    """Without Content-Length the body is counted as it arrives."""
    chunks = iter([b'{"message": "', b"x" * (1 << 20), b'"}'])
    response = client.post(
        "/v1/chat", content=chunks, headers={**auth, "content-type": "application/json"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("fault:401", 502, "upstream_auth"),
        ("fault:500", 502, "upstream_error"),
        ("fault:malformed", 502, "upstream_error"),
        ("fault:cut-stream", 502, "upstream_unreachable"),
        ("fault:slow", 504, "upstream_timeout"),
    ],
)
def test_maps_upstream_failures_to_json_errors(
    client: TestClient, auth: dict[str, str], fault: str, status: int, code: str
) -> None:
    response = chat(client, auth, message=fault)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert "Traceback" not in response.text


def test_upstream_401_says_the_key_was_rejected(client: TestClient, auth: dict[str, str]) -> None:
    error = chat(client, auth, message="fault:401").json()["error"]
    assert error["message"] == "upstream rejected the API key"


def test_passes_upstream_429_and_its_retry_after_through(
    client: TestClient, auth: dict[str, str]
) -> None:
    response = chat(client, auth, message="fault:429")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "upstream_rate_limited"


def test_a_stream_cut_upstream_ends_with_an_error_event(
    client: TestClient, auth: dict[str, str]
) -> None:
    received = events(chat(client, auth, message="fault:cut-stream", stream=True))
    assert json.loads(received[0]) == {"delta": "partial"}
    assert json.loads(received[-1])["error"]["code"] == "upstream_unreachable"


def test_answers_503_when_no_key_can_be_resolved(
    make_client: MakeClient, auth: dict[str, str]
) -> None:
    client = make_client(OPENAI_API_KEY=None, OPENAI_API_KEY_FILE="/nonexistent/key")
    response = chat(client, auth, message="hi")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "key_unavailable"
    # The detail is for the log; only client_auth=iam callers read it too (app/api/errors.py).
    assert ("/nonexistent/key" in response.json()["error"]["message"]) == SHOW_NOT_READY_DETAIL


def test_logs_token_usage_for_each_request(
    client: TestClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    chat(client, auth, message="count these words")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    usage = [line for line in lines if line["message"] == "chat completion"]
    assert len(usage) == 1
    assert usage[0]["prompt_tokens"] == 3
    assert usage[0]["completion_tokens"] == 4
    assert usage[0]["upstream_latency_ms"] >= 0


@pytest.fixture
def served_app(env: Env) -> Iterator[str]:
    """The app under a real uvicorn, where a client can really disconnect."""
    with serve_in_thread(create_app(), lifespan="on") as url:
        yield url


def test_client_disconnect_closes_the_upstream_stream(
    served_app: str, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    """A client that goes away stops the upstream stream (no tokens paid for nobody)."""
    body = {"message": "fault:drip", "stream": True}
    with (
        httpx.Client(base_url=served_app, timeout=5) as http,
        http.stream("POST", "/v1/chat", json=body, headers=auth) as response,
    ):
        assert next(response.iter_lines()).startswith("data: ")
    disconnected = time.monotonic()
    while fake_openai.streams_closed < 1 and time.monotonic() - disconnected < 3:
        time.sleep(0.01)
    assert fake_openai.streams_opened == 1
    assert fake_openai.streams_closed == 1
    # The whole drip stream takes 2 s: closing it must not wait for the end.
    assert time.monotonic() - disconnected < 1
