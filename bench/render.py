"""`cookiecutter --no-input` of the defaults, timed as a user runs it: the CLI, hooks included."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.imports import import_profile
from bench.project import Context, bake
from bench.stats import Goal, Row, Sample, Spec

RENDER = Spec("`cookiecutter --no-input` render of the defaults", Goal("<=", 1.0), None, "s")
SPECS = (RENDER,)


def render_seconds(output_dir: Path) -> float:
    started = time.perf_counter()
    bake(output_dir)
    return time.perf_counter() - started


def measure(ctx: Context) -> list[Row]:
    seconds = [render_seconds(ctx.work / f"render-{run}") for run in range(ctx.runs)]
    # Where the time goes: the CLI's imports, then one Jinja render per file, then the hooks.
    imports = import_profile(sys.executable, "cookiecutter.main", ctx.work)
    files = sum(1 for path in ctx.project.rglob("*") if path.is_file())
    note = (
        f"Importing cookiecutter takes {imports.total_ms:.0f} ms; the rest renders "
        f"{files} files through Jinja and runs the pre- and post-generation hooks."
    )
    return [Row(RENDER, Sample(tuple(seconds)), note=note)]
