"""Without REDIS_URL the service never loads a Redis client: checked in a fresh process that
starts the app, waits for /ready and serves a chat request."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import CLIENT_KEY, OPENAI_KEY
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.redis_server import RedisServer

SERVE_ONE_CHAT = """
import json, sys, time
import httpx
from app.main import create_app
from tests.fakes.server import serve_in_thread

with serve_in_thread(create_app(), lifespan="on") as url:
    while httpx.get(url + "/ready").status_code != 200:
        time.sleep(0.02)
    chat = httpx.post(url + "/v1/chat", json={"message": "hi"}, headers={"X-API-Key": sys.argv[1]})
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"redis", "limits"})
print(json.dumps({"status": chat.status_code, "loaded": loaded}))
"""


def loaded_after_a_chat(fake_openai: FakeOpenAI, **env: str) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if k.split("_")[0] not in {"REDIS", "OPENAI"}}
    settings = {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": fake_openai.base_url}
    result = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_CHAT, CLIENT_KEY],
        env=base | settings | {"CLIENT_API_KEYS": CLIENT_KEY, "LOG_LEVEL": "WARNING"} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def test_no_redis_module_is_loaded_without_redis_url(fake_openai: FakeOpenAI) -> None:
    assert loaded_after_a_chat(fake_openai) == {"status": 200, "loaded": []}


def test_redis_and_limits_are_loaded_with_redis_url(
    fake_openai: FakeOpenAI, redis: RedisServer
) -> None:
    """The check above can fail: the same process with REDIS_URL loads both."""
    answer = loaded_after_a_chat(fake_openai, REDIS_URL=redis.url)
    assert answer == {"status": 200, "loaded": ["limits", "redis"]}
