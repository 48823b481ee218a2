"""What every measure shares: the baked defaults (one bake per upstream API the template offers),
a venv with their requirements, the apps (service and references) as uvicorn command lines, and
the paced fake upstream they call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cores
from bench.paced_upstream import Pace
from bench.servers import Probe, free_port, serving

BENCH = Path(__file__).resolve().parent
TEMPLATE = BENCH.parent
# The cookiecutter CLI installed beside the Python that runs the bench (the top-level venv).
COOKIECUTTER = Path(sys.executable).parent / "cookiecutter"
CHAT_BODY = {"message": "hello from the benchmark"}
MODEL = "gpt-4o-mini"
# The API a service speaks when the template has no `openai_api` option to choose one.
LEGACY_API = "chat-completions"
# The references import their module from bench/apps; the service is the baked app package.
# The service runs as its Dockerfile runs it; the references get uvicorn's defaults minus the
# access log, which the service also leaves off by default (ACCESS_LOG=0).
REFERENCE_MODULES = {"bare": "bare", "minimal-proxy": "minimal_proxy", "raw-relay": "raw_relay"}


def upstream_apis() -> list[str]:
    """The template's `openai_api` choices, the default first; without the option, the one API
    the service speaks."""
    choices = json.loads((TEMPLATE / "cookiecutter.json").read_text()).get("openai_api")
    return list(choices) if isinstance(choices, list) else [LEGACY_API]


@dataclass(frozen=True)
class Context:
    projects: dict[str, Path]  # the baked defaults, per upstream API (the default API first)
    venv: Path  # the baked requirements (tests/venvs.py), shared by every app: the same uvicorn
    work: Path  # scratch space of this run, removed at the end
    upstream_port: int  # the paced upstream at its default pace
    upstream_pid: int
    runs: int
    wrk_seconds: float
    stream_runs: int = 3
    # What a runner leaves for the chart (bench/chart.py), by figure name.
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def api(self) -> str:
        """The default upstream API: what a user who accepts every default gets."""
        return next(iter(self.projects))

    @property
    def project(self) -> Path:
        return self.projects[self.api]

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def env(self, api: str | None = None, upstream_port: int | None = None) -> dict[str, str]:
        """The environment of every app: a key (so the service never asks Secret Manager),
        the fake upstream, a rate limit no benchmark reaches, and for the references the API
        the service variant under test speaks."""
        port = upstream_port or self.upstream_port
        return {
            **os.environ,
            "OPENAI_API_KEY": "bench-not-a-real-key",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "OPENAI_MODEL": MODEL,
            "RATE_LIMIT_PER_MINUTE": "1000000000",
            "BENCH_OPENAI_API": api or self.api,
        }

    def app_argv(self, app: str, port: int) -> list[str]:
        if app == "service":
            target = ["app.main:app"]
        else:
            target = ["--app-dir", str(BENCH / "apps"), f"{REFERENCE_MODULES[app]}:app"]
            target.append("--no-access-log")
        uvicorn = [self.bin("uvicorn"), *target, "--host", "127.0.0.1", "--port", str(port)]
        return [*cores.app_prefix(), *uvicorn]


def bake(output_dir: Path, **extra_context: str) -> Path:
    """The template's defaults, rendered by the CLI as a user renders them (hooks included)."""
    argv = [str(COOKIECUTTER), "--no-input", "--output-dir", str(output_dir), str(TEMPLATE)]
    argv += [f"{key}={value}" for key, value in extra_context.items()]
    subprocess.run(argv, capture_output=True, timeout=120, check=True)
    (project,) = output_dir.iterdir()
    return project


def compile_bytecode(venv_dir: Path, folders: list[Path]) -> None:
    """Every app's bytecode written before it is measured, as the image's `compileall` does:
    otherwise each spawn compiles the app's sources again (PYTHONDONTWRITEBYTECODE, or a
    folder the app cannot write), a cost no deployed instance pays."""
    argv = [str(venv_dir / "bin" / "python"), "-m", "compileall", "-q", *map(str, folders)]
    subprocess.run(argv, capture_output=True, timeout=120, check=True)


def bake_each_api(work: Path) -> dict[str, Path]:
    apis = upstream_apis()
    if apis == [LEGACY_API]:
        return {LEGACY_API: bake(work / "baked")}
    return {api: bake(work / f"baked-{api}", openai_api=api) for api in apis}


@contextmanager
def paced_upstream(venv_dir: Path, pace: Pace | None = None) -> Iterator[tuple[int, int]]:
    """bench/paced_upstream.py on 127.0.0.1 (uvloop from the venv); yields (port, pid)."""
    pace = pace or Pace()
    port = free_port()
    argv = [str(venv_dir / "bin" / "python"), str(BENCH / "paced_upstream.py")]
    argv += ["--port", str(port), "--first-token", str(pace.first_token)]
    argv += ["--interval", str(pace.interval), "--chunks", str(pace.chunks)]
    with serving(argv, Probe(port, "/v1/models"), cwd=BENCH, env=dict(os.environ)) as proc:
        yield port, proc.pid
