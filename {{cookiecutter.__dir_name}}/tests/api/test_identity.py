"""Who the rate limit counts: the address Cloud Run's front end saw (IPv6 per /64){{ ",
the IAM caller's email" if cookiecutter.client_auth == "iam" else (", the API key" if cookiecutter.client_auth == "api-key" else "") }}."""

from __future__ import annotations

{% if cookiecutter.client_auth == "iam" -%}
import base64
import json

{% endif -%}
import pytest
from starlette.datastructures import Headers

from app.api.identity import {{ "caller_identity, " if cookiecutter.client_auth == "iam" else "" }}client_address
from tests.conftest import {{ "CLIENT_KEY, " if cookiecutter.client_auth == "api-key" else "" }}MakeClient

PEER = {"client": ("192.0.2.10", 5000)}


def address(forwarded: str | None, hops: int = 1) -> str:
    headers = Headers({"x-forwarded-for": forwarded} if forwarded is not None else {})
    return client_address(PEER, headers, hops)


@pytest.mark.parametrize(
    ("forwarded", "hops", "expected"),
    [
        ("203.0.113.7", 1, "ip:203.0.113.7"),
        ("6.6.6.6, 203.0.113.7", 1, "ip:203.0.113.7"),  # a client-written entry cannot win
        ("6.6.6.6, 198.51.100.1, 203.0.113.7", 2, "ip:198.51.100.1"),  # behind a load balancer
        ("203.0.113.7", 2, "ip:203.0.113.7"),  # fewer entries than hops: the first
        ("6.6.6.6, 203.0.113.7", 0, "ip:192.0.2.10"),  # no proxy trusted: the socket's peer
        (None, 1, "ip:192.0.2.10"),
        ("", 1, "ip:192.0.2.10"),
        ("not-an-address", 1, "ip:192.0.2.10"),
        ("9" * 5000, 1, "ip:192.0.2.10"),
        ("::ffff:203.0.113.7", 1, "ip:203.0.113.7"),
    ],
)
def test_the_caller_is_the_entry_the_trusted_proxies_appended(
    forwarded: str | None, hops: int, expected: str
) -> None:
    assert address(forwarded, hops) == expected


def test_ipv6_addresses_share_a_bucket_per_64() -> None:
    one = address("2001:db8:1:2:aaaa::1")
    assert one == "ip:2001:db8:1:2::/64"
    assert address("2001:db8:1:2:ffff:ffff:ffff:ffff") == one
    assert address("2001:db8:1:3::1") != one


def test_trusted_proxy_hops_is_a_setting(make_client: MakeClient, auth: dict[str, str]) -> None:
    """TRUSTED_PROXY_HOPS=2: the second to last entry is the caller, so callers behind the same
    load balancer still get buckets of their own."""
    client = make_client(RATE_LIMIT_PER_MINUTE="1", TRUSTED_PROXY_HOPS="2")

    def status(caller: str) -> int:
        headers = {**auth, "X-Forwarded-For": f"{caller}, 198.51.100.1"}
        return client.post("/v1/chat", json={"message": "hi"}, headers=headers).status_code

    statuses = [status("203.0.113.1"), status("203.0.113.2"), status("203.0.113.1")]
    # Two callers, two buckets{{ "; with api-key the one key shares its bucket" if cookiecutter.client_auth == "api-key" else "" }}.
    assert statuses == [{{ "200, 429, 429" if cookiecutter.client_auth == "api-key" else "200, 200, 429" }}]
{%- if cookiecutter.client_auth == "api-key" %}


def test_api_key_callers_are_limited_per_key_wherever_they_call_from(
    make_client: MakeClient,
) -> None:
    client = make_client(RATE_LIMIT_PER_MINUTE="1")

    def status(key: str, caller: str) -> int:
        headers = {"X-API-Key": key, "X-Forwarded-For": caller}
        return client.post("/v1/chat", json={"message": "hi"}, headers=headers).status_code

    assert status(CLIENT_KEY, "203.0.113.1") == 200
    assert status(CLIENT_KEY, "203.0.113.2") == 429  # the same key from elsewhere
    assert status("client-key-two", "203.0.113.1") == 200  # another key from the same address
{%- endif %}
{%- if cookiecutter.client_auth == "iam" %}


def id_token(claims: object, signature: str = "SIGNATURE_REMOVED_BY_GOOGLE") -> str:
    """An ID token as Cloud Run hands it on: header and payload, signature removed."""

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{signature}"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": f"Bearer {id_token({'email': 'Ana@Example.com'})}"}, "ana@example.com"),
        (
            {
                "x-serverless-authorization": f"Bearer {id_token({'email': 'iam@example.com'})}",
                "authorization": f"Bearer {id_token({'email': 'app-level@example.com'})}",
            },
            "iam@example.com",  # the header Cloud Run checked when both are present
        ),
        ({"authorization": f"Bearer {id_token({'sub': '123'})}"}, None),
        ({"authorization": f"Bearer {id_token({'email': 42})}"}, None),
        ({"authorization": f"Bearer {id_token(['not', 'an', 'object'])}"}, None),
        ({"authorization": "Bearer not.a-token.at-all!"}, None),
        ({"authorization": "Bearer a.%%%.c"}, None),
        ({"authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"authorization": f"Bearer x.{'A' * 20000}.y"}, None),
        ({}, None),
    ],
    ids=[
        "authorization",
        "x-serverless-first",
        "no-email",
        "email-not-text",
        "payload-not-object",
        "not-json",
        "not-base64",
        "basic",
        "huge",
        "none",
    ],
)
def test_the_iam_caller_is_the_email_claim_of_the_forwarded_token(
    headers: dict[str, str], expected: str | None
) -> None:
    assert caller_identity(Headers(headers)) == expected


def test_iam_callers_are_limited_per_identity_then_per_address(make_client: MakeClient) -> None:
    client = make_client(RATE_LIMIT_PER_MINUTE="1")

    def status(email: str | None, caller: str) -> int:
        headers = {"X-Forwarded-For": caller}
        if email:
            headers["Authorization"] = f"Bearer {id_token({'email': email})}"
        return client.post("/v1/chat", json={"message": "hi"}, headers=headers).status_code

    assert status("ana@example.com", "203.0.113.1") == 200
    assert status("ana@example.com", "203.0.113.2") == 429  # the same caller from elsewhere
    assert status("bo@example.com", "203.0.113.1") == 200  # another caller, same address
    assert status(None, "203.0.113.1") == 200  # no identity: the address's own bucket
    assert status(None, "203.0.113.1") == 429
{%- endif %}
