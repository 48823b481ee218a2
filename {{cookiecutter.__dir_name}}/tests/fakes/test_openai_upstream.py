"""The fake upstream also runs as a process, for benchmarks and load tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_runs_as_a_module_and_answers_chat_completions() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_upstream", "--port", str(port)], cwd=ROOT
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "ping"}]}
        deadline = time.monotonic() + 10
        while True:
            try:
                response = httpx.post(url, json=body, timeout=2)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the fake did not start"
                time.sleep(0.05)
        assert response.json()["choices"][0]["message"]["content"] == "echo: ping"
        assert response.json()["usage"]["completion_tokens"] == 2
    finally:
        process.terminate()
        process.wait(timeout=10)
