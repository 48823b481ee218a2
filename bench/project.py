"""What every measure shares: the baked defaults, a venv with their requirements, the three apps
(service, bare, minimal-proxy) as uvicorn command lines, and the fake upstream they call."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.servers import Probe, free_port, serving

BENCH = Path(__file__).resolve().parent
TEMPLATE = BENCH.parent
# The cookiecutter CLI installed beside the Python that runs the bench (the top-level venv).
COOKIECUTTER = Path(sys.executable).parent / "cookiecutter"
CHAT_BODY = {"message": "hello from the benchmark"}
MODEL = "gpt-4o-mini"
# The references import their module from bench/apps; the service is the baked app package.
# The service runs as its Dockerfile runs it; the references get uvicorn's defaults minus the
# access log, which the service also leaves off by default (ACCESS_LOG=0).
APP_ARGS = {
    "service": ["app.main:app"],
    "bare": ["--app-dir", str(BENCH / "apps"), "bare:app", "--no-access-log"],
    "minimal-proxy": ["--app-dir", str(BENCH / "apps"), "minimal_proxy:app", "--no-access-log"],
}


@dataclass(frozen=True)
class Context:
    project: Path  # the baked defaults
    venv: Path  # the baked requirements (tests/venvs.py), shared by every app: the same uvicorn
    work: Path  # scratch space of this run, removed at the end
    upstream_port: int
    runs: int
    wrk_seconds: float

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def env(self) -> dict[str, str]:
        """The environment of every app: a key (so the service never asks Secret Manager),
        the fake upstream, and a rate limit no benchmark reaches."""
        return {
            **os.environ,
            "OPENAI_API_KEY": "bench-not-a-real-key",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self.upstream_port}/v1",
            "OPENAI_MODEL": MODEL,
            "RATE_LIMIT_PER_MINUTE": "1000000000",
        }

    def app_argv(self, app: str, port: int) -> list[str]:
        return [self.bin("uvicorn"), *APP_ARGS[app], "--host", "127.0.0.1", "--port", str(port)]


def bake(output_dir: Path) -> Path:
    """The template's defaults, rendered by the CLI as a user renders them (hooks included)."""
    argv = [str(COOKIECUTTER), "--no-input", "--output-dir", str(output_dir), str(TEMPLATE)]
    subprocess.run(argv, capture_output=True, timeout=120, check=True)
    (project,) = output_dir.iterdir()
    return project


@contextmanager
def fake_upstream(project: Path, venv_dir: Path) -> Iterator[int]:
    """The baked project's fake OpenAI-compatible server on 127.0.0.1; yields its port."""
    port = free_port()
    argv = [str(venv_dir / "bin" / "python"), "-m", "tests.fakes.openai_upstream"]
    probe = Probe(port, "/v1/models")
    with serving([*argv, "--port", str(port)], probe, cwd=project, env=dict(os.environ)):
        yield port
