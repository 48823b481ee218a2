"""The baked service's own quality gate: `make lint test` passes in every client_auth mode and
with each OpenAI API.

Runs inside each generated repo exactly as its users would, with a virtualenv shared by bakes
that pin the same requirements (conftest.service_venv).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Bake, require
from tests.leaks import SCAN

# The generated repo's own test key (its tests/conftest.py): never in the suite's output.
SCAN.register("baked suite OPENAI_KEY", "sk-test-openai-key-0123456789")

# The default answers are client_auth=iam and openai_api=responses, so "default" covers both.
BAKES = {
    "default": {},
    "api-key": {"client_auth": "api-key"},
    "none": {"client_auth": "none"},
    "python-3.11": {"python_version": "3.11"},
    "chat-completions": {"openai_api": "chat-completions", "client_auth": "api-key"},
}
# A lower bound on each baked suite: a refactor that drops a test file shows up here.
MIN_TESTS = {"default": 110, "api-key": 130, "none": 110, "chat-completions": 115}


def redis_available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def make(project: Path, venv: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", *targets, f"VENV={venv}"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def passed_count(output: str) -> int:
    match = re.search(r"^=+ (\d+) passed(?:, [^=]+)? in [\d.]+s", output, re.MULTILINE)
    assert match, f"no pytest summary in:\n{output[-2000:]}"
    return int(match[1])


@pytest.fixture(scope="module")
def suite_results(
    bake_once: Bake, service_venv: Callable[[Path], Path]
) -> dict[str, subprocess.CompletedProcess[str]]:
    # The baked suites test the shared limits and budgets against a real redis-server.
    require(redis_available(), "redis-server is not installed (apt-get install -y redis-server)")
    results = {}
    for name, answers in BAKES.items():
        project = bake_once(**answers)
        results[name] = make(project, service_venv(project), "lint", "test")
        SCAN.feed(f"make lint test ({name})", results[name].stdout + results[name].stderr)
    return results


@pytest.mark.parametrize("bake_name", BAKES)
def test_baked_service_passes_its_own_lint_and_tests(
    suite_results: dict[str, subprocess.CompletedProcess[str]], bake_name: str
) -> None:
    """ruff check, ruff format --check, mypy --strict on app/ and pytest all pass."""
    result = suite_results[bake_name]
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "All checks passed!" in output  # ruff check ran
    assert "files already formatted" in output  # ruff format --check ran
    assert re.search(r"Success: no issues found in \d+ source files", output)  # mypy ran
    assert " failed" not in output
    assert " skipped" not in output  # offline suite: nothing may hide behind a skip


@pytest.mark.parametrize("bake_name", MIN_TESTS)
def test_each_mode_runs_a_full_suite(
    suite_results: dict[str, subprocess.CompletedProcess[str]], bake_name: str
) -> None:
    """Every mode runs its tests, and api-key adds the client key and auth tests on top."""
    count = passed_count(suite_results[bake_name].stdout)
    assert count >= MIN_TESTS[bake_name]
    if bake_name == "api-key":
        assert count > passed_count(suite_results["default"].stdout)


def test_open_modes_ship_no_client_key_code(bake_once: Bake) -> None:
    """Only api-key keeps the key loader and its tests (post-gen table)."""
    for mode in ("iam", "none"):
        project = bake_once(client_auth=mode)
        assert not (project / "app/core/client_keys.py").exists()
        assert not (project / "tests/api/test_client_auth.py").exists()
        assert "client_keys" not in (project / "app/api/deps.py").read_text()
    assert (bake_once(client_auth="api-key") / "app/core/client_keys.py").exists()


@pytest.mark.parametrize(
    ("api", "other"), [("responses", "chat_completions"), ("chat-completions", "responses")]
)
def test_only_the_chosen_openai_api_is_rendered(bake_once: Bake, api: str, other: str) -> None:
    """The post-gen table removes the other adapter and its tests; nothing imports it."""
    project = bake_once(openai_api=api)
    chosen = api.replace("-", "_")
    assert (project / f"app/core/apis/{chosen}.py").exists()
    assert (project / f"tests/api/routes/test_chat_{chosen}.py").exists()
    assert not (project / f"app/core/apis/{other}.py").exists()
    assert not (project / f"tests/api/routes/test_chat_{other}.py").exists()
    sources = "".join(path.read_text() for path in (project / "app").rglob("*.py"))
    assert f"apis import {chosen} as api" in sources
    assert f"apis import {other}" not in sources
