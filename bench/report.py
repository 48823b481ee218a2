"""docs/benchmarks.md and .json: the rows, the machine, the versions, the commands."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import wrk
from bench.imports import ImportProfile
from bench.stats import Row

COMMANDS = (
    "make bench   # python -m bench: everything below, then writes docs/benchmarks.{md,json}",
    "cookiecutter --no-input --output-dir TMP .   # the defaults, timed as the render row",
    "uvicorn app.main:app --host 127.0.0.1 --port P   # the service, from the baked project",
    "uvicorn --app-dir bench/apps bare:app --no-access-log --host 127.0.0.1 --port P",
    "uvicorn --app-dir bench/apps minimal_proxy:app --no-access-log --host 127.0.0.1 --port P",
    "uvicorn --app-dir bench/apps raw_relay:app --no-access-log --host 127.0.0.1 --port P",
    "python bench/paced_upstream.py --port P [--first-token 0.3 --interval 0.2 --chunks 40]",
    "python bench/loadgen.py --port P --arrivals ramp:50:12|burst:1000 [--stop-at T]",
    "redis-server --port P --bind 127.0.0.1 --save '' --appendonly no   # the shared-limit row",
    f"{wrk.COMMAND} -dDs --latency [-s POST.lua] http://127.0.0.1:P/PATH",
    "docker build --network host [--no-cache] -t bench-ID-NAME CONTEXT",
    "docker build --network host -f bench/seed.Dockerfile --build-arg PYTHON_VERSION=V CONTEXT",
    "docker run --rm --network host -e PORT=P -e OPENAI_API_KEY -e OPENAI_BASE_URL IMAGE",
    "python -X importtime -c 'import uvicorn.main; import app.main'",
)


@dataclass
class Run:
    """Everything one `make bench` found, ready to be written."""

    rows: list[Row]
    machine: dict[str, Any]
    versions: dict[str, str]
    runs: int
    wrk_seconds: float
    imports: dict[str, ImportProfile] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    chart: str | None = None  # an SVG beside benchmarks.md


def _first(pattern: str, path: str) -> str:
    try:
        match = re.search(pattern, Path(path).read_text(), re.M)
    except OSError:
        return "unknown"
    return match[1].strip() if match else "unknown"


def machine() -> dict[str, Any]:
    mem_kb = _first(r"^MemTotal:\s+(\d+) kB", "/proc/meminfo")
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kb) / 2**20, 1) if mem_kb.isdigit() else None,
        "cpu_model": _first(r"^model name\s*:(.*)$", "/proc/cpuinfo"),
        "system": f"{platform.system()} {platform.release()}",
        "load_average_at_start": os.getloadavg(),
    }


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    # Whatever the exit status (`wrk -v` exits 1): no output means not available.
    return done.stdout.strip() or "not available"


def versions(python: str, base_image: str) -> dict[str, str]:
    """The bench venv's Python and packages (every app runs on them), and the tools."""
    script = (
        "import json, platform; from importlib.metadata import version as v; print(json.dumps("
        "{'python': platform.python_version(), **{p: v(p) for p in ('uvicorn', 'fastapi', "
        "'openai', 'pydantic', 'uvloop', 'httptools')}}))"
    )
    found = json.loads(_output([python, "-c", script]))
    return {
        **found,
        "docker": _output(["docker", "version", "--format", "{{.Server.Version}}"]),
        "wrk": _output(["wrk", "-v"]).split(" Copyright")[0],
        "cookiecutter": metadata.version("cookiecutter"),
        "container base image": base_image,
    }


def _value(row: Row, which: str) -> str:
    sample = row.value if which == "value" else row.reference
    if sample is None:
        return "—" if which == "reference" and not row.spec.reference else "not measured"
    values = sample.as_dict()
    spread = "" if values["runs"] == 1 else f" ({_num(values['min'])}-{_num(values['max'])})"
    return f"{_num(sample.median)} {row.spec.unit}{spread}"


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) >= 10 else f"{x:.3f}"


def _signed(x: float) -> str:
    """A difference keeps its sign and enough digits to show a small one (58 kB of 387 MB)."""
    return f"{x:+,.0f}" if abs(x) >= 100 else f"{x:+.3g}"


def _met(row: Row) -> str:
    if row.spec.goal is None and row.measured:
        return "—"
    return {True: "yes", False: "**no**", None: "not measured"}[row.met]


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| measure | goal | value: median (min-max) | reference: median (min-max) | ratio | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = f"{row.ratio:.3f}" if row.ratio is not None else "—"
        lines.append(
            f"| {row.spec.name} | {row.spec.goal_text} | {_value(row, 'value')} "
            f"| {_value(row, 'reference')} | {ratio} | {_met(row)} |"
        )
    return lines


def import_section(imports: dict[str, ImportProfile]) -> list[str]:
    lines = ["## Where start-up time goes (`python -X importtime`, median of 5 runs)", ""]
    lines += ["Each app's imports after uvicorn's own, as when the server loads it.", ""]
    for app, profile in imports.items():
        slowest = ", ".join(f"{name} {ms:.0f} ms" for name, ms in profile.direct[:6])
        lines.append(
            f"- {app}: {profile.total_ms:.0f} ms in total; slowest direct imports: {slowest}"
        )
    return [*lines, ""]


def markdown(run: Run) -> str:
    missed = [row for row in run.rows if row.met is False]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/`); do not edit by hand. Each value is the median of "
        f"{run.runs} runs (min-max), measured in the same run as its reference, alternating "
        "which goes first; ratio = value ÷ reference. Throughput runs last "
        f"{run.wrk_seconds:g} s each. The references are tiny apps in `bench/apps/` and "
        "`bench/seed.Dockerfile`, served by the same uvicorn from the same venv.",
        "",
        *table(run.rows),
        "",
    ]
    if run.chart:
        lines += [
            "## Streams against open streams",
            "",
            f"![CPU per streamed event and added first-token p99 against open streams]"
            f"({run.chart})",
            "",
            "One uvicorn process each, during the ramp (bench/streaming.py); the service beside "
            "its references.",
            "",
        ]
    if missed:
        lines += ["## Goals missed", ""]
        for row in missed:
            measured = _value(row, "value")
            if row.spec.reference and row.value and row.reference:
                diff = row.value.median - row.reference.median
                measured += (
                    f" against {_value(row, 'reference')} ({_signed(diff)} {row.spec.unit}), "
                    f"ratio {row.ratio:.3f}"
                )
            line = f"- **{row.spec.name}**: {measured}; goal {row.spec.goal_text}. {row.note}"
            lines.append(line.rstrip())
        lines.append("")
    notes = [
        *run.notes,
        *(f"{row.spec.name}: {row.note}" for row in run.rows if row.note and row.met is not False),
    ]
    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    if run.imports:
        lines += import_section(run.imports)
    m = run.machine
    lines += [
        "## Machine",
        "",
        f"{m['cores']} cores, {m['memory_gib']} GiB, {m['cpu_model']}, {m['system']}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}.",
        "",
        "## Versions",
        "",
        *(f"- {name}: {version}" for name, version in run.versions.items()),
        "",
        "## Commands",
        "",
        "```",
        *COMMANDS,
        "```",
        "",
    ]
    return "\n".join(lines)


def as_json(run: Run) -> dict[str, Any]:
    return {
        "machine": run.machine,
        "versions": run.versions,
        "runs": run.runs,
        "wrk_seconds": run.wrk_seconds,
        "notes": run.notes,
        "measures": [row.as_dict() for row in run.rows],
        "import_time_ms": {
            app: {"total": p.total_ms, "direct": dict(p.direct)} for app, p in run.imports.items()
        },
    }


def write(run: Run, docs: Path) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks.md").write_text(markdown(run))
    (docs / "benchmarks.json").write_text(
        json.dumps(as_json(run), indent=2, ensure_ascii=False) + "\n"
    )
