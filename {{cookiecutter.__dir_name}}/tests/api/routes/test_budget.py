"""Token budgets through the API: GET /v1/budget, 429 budget_exhausted on /v1/chat, streams
settled to their usage, the usage log line, and Redis shared by two app instances (or gone)."""

from __future__ import annotations

import json
import math
import time
from collections import Counter

import httpx
import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.main import create_app
from tests.conftest import MakeClient
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.redis_server import RedisServer
from tests.fakes.server import serve_in_thread


def chat(client: TestClient, auth: dict[str, str], **body: object) -> httpx.Response:
    return client.post("/v1/chat", json=body, headers=auth)


def used(reply: httpx.Response) -> int:
    """The tokens a reply says it used (the JSON reply's usage, or a stream's `done` event)."""
    if reply.headers["content-type"].startswith("text/event-stream"):
        done = next(e for e in events(reply) if e.startswith('{"done"'))
        usage = json.loads(done)["done"]["usage"]
    else:
        usage = reply.json()["usage"]
    return int(usage["input_tokens"]) + int(usage["output_tokens"])


def events(reply: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in reply.text.splitlines() if line]


def spend(client: TestClient, auth: dict[str, str]) -> dict[str, dict[str, int | None]]:
    response = client.get("/v1/budget", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, dict[str, int | None]] = response.json()
    return body


def test_budget_reports_what_a_call_used_and_what_remains(
    make_client: MakeClient, auth: dict[str, str]
) -> None:
    client = make_client(CLIENT_TOKEN_BUDGET_PER_DAY="500", TOKEN_BUDGET_PER_DAY="10000")
    fresh = {"spent": 0, "reserved": 0, "budget": 500, "remaining": 500}
    assert spend(client, auth)["client"] == fresh
    reply = chat(client, auth, message="one two three")
    assert reply.status_code == 200
    body = spend(client, auth)
    tokens = used(reply)
    assert body["client"] == {
        "spent": tokens,
        "reserved": 0,
        "budget": 500,
        "remaining": 500 - tokens,
    }
    assert body["service"]["remaining"] == 10000 - tokens
    assert 0 < int(body["resets_in_seconds"]) <= 86400  # type: ignore[call-overload]


def test_over_budget_chat_is_429_until_midnight_and_never_reaches_openai(
    make_client: MakeClient, auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client = make_client(CLIENT_TOKEN_BUDGET_PER_DAY="5")
    assert used(chat(client, auth, message="one two three")) > 5  # let through, then used up
    calls = len(fake_openai.requests)
    refused = chat(client, auth, message="again")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "budget_exhausted"
    assert 0 < int(refused.headers["retry-after"]) <= 86400
    assert len(fake_openai.requests) == calls
    assert spend(client, auth)["client"]["remaining"] == 0


def test_a_failed_call_is_not_charged(make_client: MakeClient, auth: dict[str, str]) -> None:
    client = make_client(CLIENT_TOKEN_BUDGET_PER_DAY="5000")
    assert chat(client, auth, message="fault:500").status_code == 502
    assert spend(client, auth)["client"]["spent"] == 0


def test_a_stream_is_settled_to_its_reported_usage(
    make_client: MakeClient, auth: dict[str, str]
) -> None:
    client = make_client(CLIENT_TOKEN_BUDGET_PER_DAY="5000")
    reply = chat(client, auth, message="one two", stream=True)
    assert reply.status_code == 200
    assert spend(client, auth)["client"]["spent"] == used(reply)


def test_a_cut_stream_with_no_usage_is_charged_what_was_seen(
    make_client: MakeClient, auth: dict[str, str]
) -> None:
    client = make_client(CLIENT_TOKEN_BUDGET_PER_DAY="5000", OPENAI_MAX_TOKENS="100")
    message = "fault:cut-stream"
    input_chars = len(message) + len(get_settings().system_prompt.strip())
    reply = chat(client, auth, message=message, stream=True)
    seen = "".join(json.loads(e)["delta"] for e in events(reply) if e.startswith('{"delta"'))
    assert seen  # a delta came before the cut, and no usage after it
    # The input estimate plus the output seen (a token a delta, or a quarter of its characters).
    expected = math.ceil(input_chars / 4) + max(1, math.ceil(len(seen) / 4))
    assert spend(client, auth)["client"]["spent"] == expected


def test_an_aborted_stream_is_charged_what_was_seen(
    env: object, auth: dict[str, str], make_client: MakeClient
) -> None:
    """The caller hangs up mid-stream: the settle still runs (shielded from the cancel)."""
    make_client(CLIENT_TOKEN_BUDGET_PER_DAY="5000", OPENAI_MAX_TOKENS="100")
    app = create_app()
    with serve_in_thread(app, lifespan="on") as url:
        with httpx.stream(
            "POST", f"{url}/v1/chat", json={"message": "fault:drip", "stream": True}, headers=auth
        ) as response:
            lines = response.iter_lines()
            seen = [line for line, _ in zip(lines, range(6), strict=False) if line]
        assert len(seen) == 3  # three deltas, then the client closes
        for _ in range(50):
            body = httpx.get(f"{url}/v1/budget", headers=auth).json()
            if body["client"]["reserved"] == 0:
                break
            httpx.get(f"{url}/health")
    spent = body["client"]["spent"]
    # The input estimate plus the deltas sent before the close (the cancel lands within a few).
    assert math.ceil(len("fault:drip") / 4) + 3 <= spent < 100


def test_the_usage_line_reports_the_clients_spend(
    make_client: MakeClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(CLIENT_TOKEN_BUDGET_PER_DAY="500")
    capsys.readouterr()
    tokens = used(chat(client, auth, message="one two three"))
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    usage = next(x for x in lines if x["message"] == "chat completion")
    assert usage["client"].startswith(("key:", "ip:", "user:"))
    assert usage["tokens_charged"] == tokens
    assert usage["client_tokens_spent"] == tokens
    assert usage["client_tokens_remaining"] == 500 - tokens
    assert usage["service_tokens_remaining"] is None  # no service budget set


def test_two_instances_share_one_budget_through_redis(
    make_client: MakeClient, auth: dict[str, str], redis: RedisServer
) -> None:
    settings = {"REDIS_URL": redis.url}
    probe = make_client(**settings)
    tokens = used(chat(probe, auth, message="one two three"))  # what one such call uses
    redis.cli("FLUSHALL")
    budget = {"CLIENT_TOKEN_BUDGET_PER_DAY": str(tokens + 1), **settings}
    first, second = make_client(**budget), make_client(**budget)
    assert chat(first, auth, message="one two three").status_code == 200  # 1 token left
    assert chat(second, auth, message="one two three").status_code == 200  # now used up
    assert chat(first, auth, message="one two three").status_code == 429
    assert spend(second, auth)["client"]["spent"] == 2 * tokens


# What one /v1/chat call costs Redis with a budget: three scripts (the `limits` sliding window
# with 7 commands inside it, the reservation and the settlement with 4 each), on a connection
# that stays open. Each command is Redis CPU; each round trip is the service's.
ROUND_TRIPS_PER_CHAT = 3
COMMANDS_PER_CHAT = 18
# What a round trip must not bring along: a health check, a new connection, a script's text.
OVERHEAD = ("ping", "hello", "auth", "select", "client|setinfo", "eval", "script|load")


def commands_since_reset(redis: RedisServer) -> Counter[str]:
    """INFO commandstats as {command: calls}, commands run inside scripts included."""
    calls: Counter[str] = Counter()
    for line in redis.cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, stats = line.removeprefix("cmdstat_").partition(":")
            calls[name] = int(stats.split(",")[0].removeprefix("calls="))
    calls.pop("config|resetstat", None)
    return calls


def test_a_chat_call_costs_redis_three_round_trips(
    make_client: MakeClient, auth: dict[str, str], redis: RedisServer
) -> None:
    client = make_client(REDIS_URL=redis.url, TOKEN_BUDGET_PER_DAY="1000000")
    assert chat(client, auth, message="hello").status_code == 200  # connected, the day's keys
    assert redis.cli("CONFIG", "RESETSTAT") == "OK"
    calls = 10
    for _ in range(calls):
        assert chat(client, auth, message="hello").status_code == 200
    seen = commands_since_reset(redis)
    assert seen["evalsha"] == ROUND_TRIPS_PER_CHAT * calls, seen
    assert {name: seen[name] for name in OVERHEAD if seen[name]} == {}
    assert sum(seen.values()) <= COMMANDS_PER_CHAT * calls, seen


def test_redis_down_budgets_answer_503_and_ready_says_degraded(
    make_client: MakeClient, auth: dict[str, str], redis: RedisServer
) -> None:
    client = make_client(REDIS_URL=redis.url, CLIENT_TOKEN_BUDGET_PER_DAY="1000")
    assert chat(client, auth, message="hello").status_code == 200  # the key is resolved
    assert client.get("/ready").json() == {"status": "ready", "degraded": False}
    redis.stop()
    refused = chat(client, auth, message="hello")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "budget_unavailable"
    assert "redis" not in refused.text.lower()  # the caller is not told about internals
    assert client.get("/v1/budget", headers=auth).status_code == 503
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "degraded": True}


def test_budget_fail_open_lets_calls_through_while_redis_is_down(
    make_client: MakeClient, auth: dict[str, str], redis: RedisServer
) -> None:
    settings = {"REDIS_URL": redis.url, "CLIENT_TOKEN_BUDGET_PER_DAY": "1000"}
    client = make_client(BUDGET_FAIL_OPEN="1", **settings)
    redis.stop()
    assert chat(client, auth, message="hello").status_code == 200


def test_a_redis_that_is_down_at_startup_is_reported_before_any_request(
    make_client: MakeClient, redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = redis.url
    redis.stop()
    client = make_client(REDIS_URL=url)
    for _ in range(200):  # until the key is resolved too
        if client.get("/ready").status_code == 200:
            break
        time.sleep(0.01)
    assert client.get("/ready").json() == {"status": "ready", "degraded": True}
    errors = [x for x in capsys.readouterr().out.splitlines() if '"severity": "ERROR"' in x]
    assert len(errors) == 1
    assert "Redis unavailable" in errors[0]
