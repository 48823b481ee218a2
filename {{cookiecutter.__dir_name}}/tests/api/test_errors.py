"""Request errors a caller can act on: what was wrong with the body, and where."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def post(
    client: TestClient, auth: dict[str, str], body: bytes, content_type: str | None
) -> dict[str, str]:
    headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
    response = client.post("/v1/chat", content=body, headers=headers)
    assert response.status_code == 422
    error: dict[str, str] = response.json()["error"]
    assert error["code"] == "invalid_request"
    return error


@pytest.mark.parametrize(
    ("content_type", "named"),
    [
        (None, "no Content-Type"),
        ("text/plain", "Content-Type: text/plain"),
        ("application/x-www-form-urlencoded", "Content-Type: application/x-www-form-urlencoded"),
        ("<script>/x" * 30, "no Content-Type"),  # not a media type: not echoed back
    ],
    ids=["none", "text-plain", "curl-d-default", "garbage"],
)
def test_a_body_without_the_json_content_type_says_so(
    client: TestClient, auth: dict[str, str], content_type: str | None, named: str
) -> None:
    message = post(client, auth, b'{"message": "hi"}', content_type)["message"]
    assert "Content-Type: application/json" in message
    assert named in message
    assert "<script>" not in message


def test_invalid_json_says_where_it_breaks(client: TestClient, auth: dict[str, str]) -> None:
    message = post(client, auth, b'{"message":\n  "hi",,}', "application/json")["message"]
    assert "not valid JSON" in message
    assert "line 2, column 8" in message


def test_a_json_body_that_fails_validation_names_the_field(
    client: TestClient, auth: dict[str, str]
) -> None:
    message = post(client, auth, b'{"message": ""}', "application/json")["message"]
    assert message.startswith("body.message:")
