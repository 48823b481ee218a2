"""Shared fixtures: bakes, tool requirements (fail under CI=true, skip locally), shared venvs."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.venvs import service_venv_for

# The leak scan over every captured log; the service and its fakes as processes; deploy.sh's
# sandbox (stand-ins for gcloud, docker and curl) and the revision its smoke test calls.
pytest_plugins = ["tests.leaks", "tests.processes", "tests.fixtures.deploy"]
TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def require(available: bool, reason: str) -> None:
    """Skip locally when a tool is missing; under CI=true a missing tool is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests that need it must run, not skip)")
    pytest.skip(reason)


def docker_engine_running() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False)
    return result.returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """A Docker engine that answers `docker info` (.ci/provision starts one)."""
    require(docker_engine_running(), "no Docker engine answers `docker info`; run .ci/provision")
    docker = shutil.which("docker")
    assert docker is not None
    return docker


@pytest.fixture(scope="session")
def real_gcloud() -> str:
    """The real gcloud CLI, whose argument parser checks every line deploy.sh runs."""
    gcloud = shutil.which("gcloud", path="/usr/bin:" + os.environ.get("PATH", ""))
    require(gcloud is not None, "the gcloud CLI is not installed")
    assert gcloud is not None
    return gcloud


Bake = Callable[..., Path]


def _bake_with(cookies: Any, **extra_context: Any) -> Path:
    result = cookies.bake(extra_context=extra_context)
    assert result.exception is None, result.exception
    assert result.exit_code == 0
    return Path(result.project_path)


@pytest.fixture
def bake(cookies: Any) -> Bake:
    """Render the template with the given answers and return the generated repo."""
    return lambda **extra: _bake_with(cookies, **extra)


@pytest.fixture(scope="session")
def bake_once(cookies_session: Any) -> Bake:
    """Like `bake`, but each distinct set of answers is rendered once per test session."""
    baked: dict[tuple[tuple[str, str], ...], Path] = {}

    def bake_cached(**extra: Any) -> Path:
        key = tuple(sorted((k, str(v)) for k, v in extra.items()))
        if key not in baked:
            baked[key] = _bake_with(cookies_session, **extra)
        return baked[key]

    return bake_cached


@pytest.fixture(scope="session")
def default_project(bake_once: Bake) -> Path:
    return bake_once()


@pytest.fixture(scope="session")
def service_venv() -> Callable[[Path], Path]:
    """A virtualenv with a generated repo's requirements, shared by bakes that pin the same ones."""
    return service_venv_for
