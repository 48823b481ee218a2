"""`make bench`: bake the defaults, measure every row of the table, write docs/benchmarks.*.

python -m bench [--runs 7] [--wrk-seconds 5] [--stream-runs 3] [--docs docs]
python -m bench --local [--only streaming ...]   # a developer's look: writes .cache/bench/ only

docs/ is written only after a `make test` that passed (.cache/junit.xml): figures of a failing
suite describe code that does not work.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

from bench import (
    chart,
    cores,
    images,
    imports,
    profile,
    render,
    report,
    shared_limits,
    startup,
    streaming,
    suite,
    throughput,
)
from bench.project import BENCH, TEMPLATE, Context, bake_each_api, compile_bytecode, paced_upstream
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
    slow_start = (startup.HEALTH, *startup.CHAT.values(), images.CONTAINER)
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


def profiled(ctx: Context) -> list[str]:
    """The request-path profile's notes; a profile that fails says so and stops nothing."""
    log("bench.profile: where a request's CPU goes (py-spy)")
    try:
        return profile.notes(ctx)
    except Exception as error:  # any failure: reported in the notes, the table still stands
        traceback.print_exc()
        return [f"Profile not taken: {error}".splitlines()[0]]


def present_note(project: Path) -> str:
    """Which optional parts the measured bake carries (unused unless configured)."""
    app = "\n".join(path.read_text() for path in (project / "app").rglob("*.py"))
    parts = {
        "the shared limiter (REDIS_URL)": "redis" in app,
        "the Responses adapter": (project / "app" / "core" / "apis" / "responses.py").is_file(),
    }
    found = [f"{name}: {'yes' if present else 'no'}" for name, present in parts.items()]
    return "Optional code present in the measured bake, unused unless configured: " + (
        "; ".join(found) + "."
    )


def busy_note(load_at_start: tuple[float, float, float], cores: int) -> list[str]:
    if load_at_start[0] < cores / 2:
        return []
    return [
        f"Busy run: the 1-minute load average was {load_at_start[0]:.2f} on {cores} cores before "
        "the bench started (others' tests were running); absolute numbers are noisy, ratios "
        "absorb most of it (value and reference alternate), the min-max spread shows the rest."
    ]


RUNNERS: tuple[ModuleType, ...] = (startup, throughput, shared_limits, streaming, images, render,
                                   suite)  # fmt: skip
LOCAL = TEMPLATE / ".cache" / "bench"


def open_files_limit() -> None:
    """1,000 streams hold 2,000 sockets in one process: the children inherit the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def load_text() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="runs per median (at least 7)")
    parser.add_argument("--wrk-seconds", type=float, default=5.0, help="length of a wrk run")
    parser.add_argument("--stream-runs", type=int, default=3, help="runs per streaming median")
    parser.add_argument("--docs", type=Path, default=TEMPLATE / "docs", help="where to write")
    parser.add_argument(
        "--local",
        action="store_true",
        help="a developer's look: run even after a failed `make test`, write .cache/bench/ "
        "(never docs/)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=[r.__name__.split(".")[-1] for r in RUNNERS],
        help="measure these runners only (implies nothing else; combine with --local)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.runs < 1 or args.stream_runs < 1:
        parser.error("--runs and --stream-runs must be at least 1")
    if args.only and not args.local:
        parser.error("--only gives a partial table: add --local (it never writes docs/)")
    out = LOCAL if args.local else args.docs
    if not args.local:
        try:
            suite.clean_run(suite.JUNIT)
        except suite.SuiteNotClean as refusal:
            print(
                f"make bench: refusing to write {out}: {refusal}\n"
                "Figures in docs/ come from a suite that passes. For a local look that never "
                "writes docs/: make bench BENCH_ARGS=--local",
                file=sys.stderr,
            )
            return 2
    runners = [r for r in RUNNERS if not args.only or r.__name__.split(".")[-1] in args.only]

    cores.pin_bench()
    started = time.monotonic()
    machine = report.machine()
    log(f"load average at start: {load_text()} on {machine['cores']} cores")
    open_files_limit()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        log("baking the defaults (one per upstream API) and preparing the venv")
        projects = bake_each_api(work)
        venv_dir = service_venv_for(next(iter(projects.values())))
        compile_bytecode(
            venv_dir, [*(project / "app" for project in projects.values()), BENCH / "apps"]
        )
        with paced_upstream(venv_dir) as (port, pid):
            ctx = Context(projects, venv_dir, work, port, pid, args.runs, args.wrk_seconds,
                          args.stream_runs)  # fmt: skip
            rows: list[Row] = []
            for runner in runners:
                rows += measured(runner, ctx)
            profile_notes = profiled(ctx) if throughput in runners else []
        profiles = imports.profiles(ctx) if startup in runners else {}
        python_version = json.loads((ctx.project / ".cookiecutter.json").read_text())[
            "python_version"
        ]
        base = images.describe_base_image(python_version)
        versions = report.versions(ctx.bin("python"), base)
        present = present_note(ctx.project)  # before the bake is removed with `work`

    notes = busy_note(machine["load_average_at_start"], machine["cores"] or 1)
    notes += [
        f"The whole bench took {time.monotonic() - started:.0f} s; load average at the end "
        f"{load_text()} (the bench's own load included).",
        present,
        cores.note(),
        *profile_notes,
        *(["--local run: not for docs/."] if args.local else []),
        *([f"Base image: {base}."] if images.STAND_IN_PREFIX in base or "STAND-IN" in base else []),
    ]
    chart_name = None
    if "streams" in ctx.figures:
        out.mkdir(parents=True, exist_ok=True)
        chart_name = "benchmarks-streams.svg"
        (out / chart_name).write_text(chart.svg(ctx.figures["streams"]))
    run = report.Run(
        explain_startup(rows, profiles), machine, versions, args.runs, args.wrk_seconds,
        profiles, notes, chart_name,
    )  # fmt: skip
    report.write(run, out)
    log(f"wrote {out / 'benchmarks.md'} and benchmarks.json; load average {load_text()}")
    print(report.markdown(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
