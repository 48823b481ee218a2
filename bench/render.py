"""`cookiecutter --no-input` of the defaults, timed as a user runs it: the CLI, hooks included."""

from __future__ import annotations

import time
from pathlib import Path

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
    return [Row(RENDER, Sample(tuple(seconds)))]
