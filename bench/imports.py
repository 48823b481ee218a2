"""Where start-up time goes: `python -X importtime`, the module's direct imports, slowest first
(medians over a few runs)."""

from __future__ import annotations

import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.project import BENCH, Context

# `import time: <self us> | <cumulative us> | <two spaces per level><module>`
_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \|( +)(\S+)$")


@dataclass(frozen=True)
class ImportProfile:
    total_ms: float
    direct: list[tuple[str, float]]  # (module, cumulative ms), slowest first


def parse_importtime(stderr: str, module: str, count: int = 8) -> ImportProfile:
    """The cumulative time of `module` and of the modules it imports directly.

    A module's line follows the lines of what it imported (one level deeper), so direct
    imports are collected until their parent's line comes."""
    children: list[tuple[str, float]] = []
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        level = (len(match[2]) - 1) // 2
        name, ms = match[3], int(match[1]) / 1000
        if level == 1:
            children.append((name, ms))
        elif level == 0:
            if name == module:
                top = sorted(children, key=lambda child: child[1], reverse=True)[:count]
                return ImportProfile(ms, top)
            children = []
    raise ValueError(f"{module} is not in the importtime output")


def median_profile(runs: list[ImportProfile], count: int = 8) -> ImportProfile:
    """One run's import times are noisy on a busy machine: the median of each, over runs."""
    names = {name for run in runs for name, _ in run.direct}
    direct = [
        (name, statistics.median(ms for run in runs for n, ms in run.direct if n == name))
        for name in names
    ]
    direct.sort(key=lambda child: child[1], reverse=True)
    return ImportProfile(statistics.median(run.total_ms for run in runs), direct[:count])


def import_profile(
    python: str, module: str, cwd: Path, runs: int = 5, after: str | None = None
) -> ImportProfile:
    """`module`'s imports, those of `after` made first: for an app, after uvicorn's own
    (asyncio, logging...), as when the server loads it, so what is left is what the app adds."""
    first = f"import {after}; " if after else ""

    def once() -> ImportProfile:
        done = subprocess.run(
            [python, "-X", "importtime", "-c", f"{first}import {module}"],
            cwd=cwd, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return parse_importtime(done.stderr, module, count=1000)

    return median_profile([once() for _ in range(runs)])


def profiles(ctx: Context) -> dict[str, ImportProfile]:
    """The service's app.main and the references, with the bench venv's Python."""
    python, server = ctx.bin("python"), "uvicorn.main"
    return {
        "service": import_profile(python, "app.main", ctx.project, after=server),
        "bare": import_profile(python, "bare", BENCH / "apps", after=server),
        "minimal-proxy": import_profile(python, "minimal_proxy", BENCH / "apps", after=server),
    }
