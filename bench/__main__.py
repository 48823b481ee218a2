"""`make bench`: bake the defaults, measure every row of the table, write docs/benchmarks.*.

python -m bench [--runs 7] [--wrk-seconds 5] [--docs docs]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

from bench import images, imports, render, report, startup, suite, throughput
from bench.project import TEMPLATE, Context, bake, fake_upstream
from bench.stats import Row
from tests.venvs import service_venv_for


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def measured(runner: ModuleType, ctx: Context) -> list[Row]:
    """The runner's rows; if it fails, its rows say why instead of stopping the whole bench."""
    log(f"{runner.__name__}: {runner.__doc__.splitlines()[0]}")
    started = time.monotonic()
    try:
        rows: list[Row] = runner.measure(ctx)
    except Exception as error:  # any failure: reported in the table, the other rows still run
        traceback.print_exc()
        rows = [Row(spec, note=f"not measured: {error}".splitlines()[0]) for spec in runner.SPECS]
    log(f"{runner.__name__}: {time.monotonic() - started:.0f} s")
    return rows


def explain_startup(rows: list[Row], profiles: dict[str, imports.ImportProfile]) -> list[Row]:
    """A missed start-up goal names what dominates: the service's slowest imports."""
    slow_start = (startup.HEALTH, startup.CHAT, images.CONTAINER)
    service = profiles.get("service")

    def explained(row: Row) -> Row:
        if row.met is not False or row.spec not in slow_start or service is None:
            return row
        reference = profiles.get(str(row.spec.reference), profiles["bare"])
        shared = {name for name, _ in reference.direct}
        own = [(name, ms) for name, ms in service.direct if name not in shared]
        slowest = ", ".join(f"{name} {ms:.0f} ms" for name, ms in own[:4])
        why = (
            f"Importing app.main takes {service.total_ms:.0f} ms (the reference's app: "
            f"{reference.total_ms:.0f} ms); its slowest imports the reference does not make: "
            f"{slowest}."
        )
        return dataclasses.replace(row, note=f"{row.note} {why}".strip())

    return [explained(row) for row in rows]


def busy_note(load_at_start: tuple[float, float, float], cores: int) -> list[str]:
    if load_at_start[0] < cores / 2:
        return []
    return [
        f"Busy run: the 1-minute load average was {load_at_start[0]:.2f} on {cores} cores before "
        "the bench started (others' tests were running); absolute numbers are noisy, ratios "
        "absorb most of it (value and reference alternate), the min-max spread shows the rest."
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="runs per median (at least 7)")
    parser.add_argument("--wrk-seconds", type=float, default=5.0, help="length of a wrk run")
    parser.add_argument("--docs", type=Path, default=TEMPLATE / "docs", help="where to write")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    started = time.monotonic()
    machine = report.machine()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        log("baking the defaults and preparing the venv")
        project = bake(work / "baked")
        venv_dir = service_venv_for(project)
        with fake_upstream(project, venv_dir) as upstream_port:
            ctx = Context(project, venv_dir, work, upstream_port, args.runs, args.wrk_seconds)
            rows: list[Row] = []
            for runner in (startup, throughput, images, render, suite):
                rows += measured(runner, ctx)
        profiles = imports.profiles(ctx)
        base_image = "python:{}-slim".format(
            json.loads((project / ".cookiecutter.json").read_text())["python_version"]
        )
        versions = report.versions(ctx.bin("python"), base_image)

    notes = busy_note(machine["load_average_at_start"], machine["cores"] or 1)
    notes.append(
        f"The whole bench took {time.monotonic() - started:.0f} s; 1-minute load average at the "
        f"end {os.getloadavg()[0]:.2f} (the bench's own load included)."
    )
    run = report.Run(
        explain_startup(rows, profiles), machine, versions, args.runs, args.wrk_seconds,
        profiles, notes,
    )  # fmt: skip
    report.write(run, args.docs)
    log(f"wrote {args.docs / 'benchmarks.md'} and benchmarks.json")
    print(report.markdown(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
