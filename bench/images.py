"""Docker: image size, `docker run` → first 200, and rebuild after an app/-only change.

Every image is built from a copy of the baked project with `--network host`, tagged with this
run's unique prefix, and removed at the end (with the untagged images that rebuilds leave).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench import cores, layers
from bench.project import BENCH, Context
from bench.servers import Probe, free_port, time_to_first_200
from bench.stats import Goal, Row, Sample, Spec, alternate
from tests.base_images import build_args

SIZE = Spec("image size", Goal("<=", 1.00), "seed-image", "MB")
CONTAINER = Spec(
    "container `docker run` → first 200 on GET /health", Goal("<=", 1.05), "bare app's image", "s"
)
REBUILD = Spec(
    "rebuild after an app/-only change", Goal("<=", 0.05), "cold (--no-cache) build", "s"
)
SPECS = (SIZE, CONTAINER, REBUILD)
BUILD_TIMEOUT = 600
# Passed by name (`-e NAME`): values come from the context's environment, not from argv.
CONTAINER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "RATE_LIMIT_PER_MINUTE")


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return False
    return info.returncode == 0


# Offline machines build the base image from Debian packages (.ci/provision) and tag it so.
STAND_IN_PREFIX = "cloudrun-fastapi-ci/"


def describe_base_image(python_version: str) -> str:
    """The base image builds use here, named, and said plainly when it is the offline stand-in
    (figures on it are not those of the official image)."""
    official = f"python:{python_version}-slim"
    for name in (f"{STAND_IN_PREFIX}{official}", official):
        try:
            done = subprocess.run(
                ["docker", "history", "--no-trunc", "--format", "{{.Comment}}", name],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return f"{official} (no Docker engine: not inspected)"
        if done.returncode == 0:
            return describe_base(name, done.stdout)
    return f"{official} (not present locally)"


def describe_base(name: str, history_comments: str) -> str:
    """`docker import` leaves "Imported from -" in the history: a stand-in, not the registry's."""
    if name.startswith(STAND_IN_PREFIX) or "Imported from" in history_comments:
        return (
            f"{name}: the OFFLINE STAND-IN (Debian minbase + python3 imported by .ci/provision), "
            "not the official image: image size and docker-run figures differ from it"
        )
    return name


@dataclass(frozen=True)
class Build:
    image: str
    seconds: float
    steps: list[tuple[str, float]]  # (instruction, seconds), slowest first


class Docker:
    """Builds and runs under a unique prefix, and remembers every image it made."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.prefix = f"bench-{secrets.token_hex(4)}"
        self.images: set[str] = set()

    def build(self, context: Path, name: str, *extra: str) -> Build:
        iidfile = self.work / f"{name}.iid"
        iidfile.unlink(missing_ok=True)
        argv = ["docker", "build", "--network", "host", "--force-rm", "--iidfile", str(iidfile)]
        argv += ["-t", f"{self.prefix}-{name}", *extra, str(context)]
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        watchdog = threading.Timer(BUILD_TIMEOUT, proc.kill)  # bounded, even if it hangs
        watchdog.start()
        try:
            assert proc.stdout is not None
            timed = [(time.perf_counter(), line.rstrip()) for line in proc.stdout]
            proc.wait()
        finally:
            watchdog.cancel()
        ended = time.perf_counter()
        if iidfile.exists():
            self.images.add(iidfile.read_text().strip())
        if proc.returncode != 0:
            output = "\n".join(line for _, line in timed[-30:])
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{output}")
        steps = layers.step_durations(timed, ended)
        return Build(iidfile.read_text().strip(), ended - started, steps)

    def history(self, image: str) -> str:
        fmt = "{{.CreatedBy}}\t{{.Size}}"
        return subprocess.run(
            ["docker", "history", "--no-trunc", "--format", fmt, image],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip

    def size_mb(self, image: str) -> float:
        out = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", image],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        return int(out) / 1e6

    def run_seconds(self, ctx: Context, image: str) -> float:
        """`docker run` → first 200 on /health; the container is removed whatever happens."""
        port = free_port()
        name = f"{self.prefix}-{secrets.token_hex(3)}"
        argv = ["docker", "run", "--rm", "--name", name, "--network", "host", "-e", f"PORT={port}"]
        argv += cores.docker_options()
        for variable in CONTAINER_ENV:
            argv += ["-e", variable]
        remove = ["docker", "rm", "-f", name]
        return time_to_first_200(
            [*argv, image],
            Probe(port),
            cwd=self.work,
            env=ctx.env(),
            cleanup=partial(subprocess.run, remove, capture_output=True, timeout=60, check=False),
        )

    def remove_images(self) -> None:
        if self.images:
            subprocess.run(
                ["docker", "rmi", "-f", *sorted(self.images)],
                capture_output=True, timeout=300, check=False,
            )  # fmt: skip


@contextmanager
def docker(work: Path) -> Iterator[Docker]:
    engine = Docker(work)
    try:
        yield engine
    finally:
        engine.remove_images()


def contexts(ctx: Context) -> tuple[Path, Path]:
    """Two copies of the baked project: as generated, and with app/ replaced by the bare app."""
    service = ctx.work / "service-image"
    bare = ctx.work / "bare-image"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ctx.project, service, ignore=ignore)
    shutil.copytree(ctx.project, bare, ignore=ignore)
    shutil.rmtree(bare / "app")
    (bare / "app").mkdir()
    (bare / "app" / "__init__.py").touch()
    shutil.copy(BENCH / "apps" / "bare.py", bare / "app" / "main.py")
    return service, bare


def measure(ctx: Context) -> list[Row]:
    if not engine_answers():
        raise RuntimeError("no Docker engine answers `docker info`")
    service_context, bare_context = contexts(ctx)
    with docker(ctx.work) as engine:
        rebuilt: list[Build] = []

        base = build_args(service_context / "Dockerfile")

        def cold() -> float:
            return engine.build(service_context, "service", "--no-cache", *base).seconds

        def rebuild() -> float:
            """Change app/ only, as a developer does between two builds."""
            with (service_context / "app" / "main.py").open("a") as main:
                main.write(f"# bench rebuild {secrets.token_hex(4)}\n")
            rebuilt.append(engine.build(service_context, "service", *base))
            return rebuilt[-1].seconds

        colds, rebuilds = alternate(ctx.runs, cold, rebuild)
        service = rebuilt[-1].image
        seed = engine.build(
            service_context,
            "seed",
            "-f", str(BENCH / "seed.Dockerfile"),
            *base,
        ).image  # fmt: skip
        bare = engine.build(bare_context, "bare", *base).image
        for image in (service, bare):  # one unmeasured start each: warms the page cache
            engine.run_seconds(ctx, image)
        starts, bare_starts = alternate(
            ctx.runs,
            partial(engine.run_seconds, ctx, service),
            partial(engine.run_seconds, ctx, bare),
        )
        extra = layers.extra_layers(engine.history(service), engine.history(seed))
        slowest = rebuilt[-1].steps[:3]
        # Sizes are the same at every build: one reading each.
        return [
            Row(
                SIZE,
                Sample((engine.size_mb(service),)),
                Sample((engine.size_mb(seed),)),
                note="Layers the seed image does not have: "
                + ("; ".join(f"`{created}` {size}" for created, size in extra) or "none"),
            ),
            Row(CONTAINER, Sample(tuple(starts)), Sample(tuple(bare_starts))),
            Row(
                REBUILD,
                Sample(tuple(rebuilds)),
                Sample(tuple(colds)),
                note="Slowest steps of the last rebuild: "
                + ("; ".join(f"`{step}` {sec:.1f} s" for step, sec in slowest) or "not reported"),
            ),
        ]
