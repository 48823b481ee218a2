"""docs/reliability.md from what the slow tests measured (.cache/reliability.json).

The tests call `record(run, figures)`; `python -m tests.reliability_report` renders the page.
Nothing here is typed in by hand: the page shows the last real run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / ".cache" / "reliability.json"
PAGE = ROOT / "docs" / "reliability.md"

TITLES = {
    "load": "Load with upstream faults",
    "disconnects": "Clients that hang up mid-stream",
    "sigterm": "SIGTERM during load",
    "secret_manager": "Secret Manager faults",
    "fuzz": "Schema fuzzing (schemathesis)",
    "shared_limit": "One rate limit over three instances (Redis)",
    "shared_budget": "One token budget, 200 concurrent calls over three instances (Redis)",
    "redis_outage": "Redis stopped mid-load, then started again",
    "leak_scan": "Leak scan of every captured log",
}


def record(run: str, figures: dict[str, Any]) -> None:
    """Store one run's figures (the latest run of each kind wins)."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[run] = figures
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    return str(value).replace("|", "\\|")  # a pipe would end the table cell


def _summary(results: dict[str, Any]) -> list[str]:
    """One row per run: the figures every run records, and the suite-wide leak count."""
    leaks = results.get("leak_scan", {}).get("hits", "not scanned")
    lines = [
        "| run | requests | faults injected | answers by status | crashes | leaks | memory |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run, title in TITLES.items():
        figures = results.get(run)
        if figures is None or run == "leak_scan":
            continue
        memory = figures.get("rss_change_percent")
        cells = [
            title,
            *(_value(figures.get(key, "-")) for key in ("requests", "faults_injected")),
            _value(figures.get("by_status", "-")),
            _value(figures.get("crashes", "-")),
            str(leaks),
            "-" if memory is None else f"RSS {memory:+} % after the run vs after warm-up",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Reliability and security figures",
        "",
        "Measured by the template's slow tests (`tests/test_reliability.py`,",
        "`tests/test_secret_faults.py`, `tests/test_fuzz.py`, `tests/test_shared_limits.py`)",
        "against a baked service run as real uvicorn processes on 127.0.0.1 (three behind one",
        "redis-server for the shared limits), and by the leak scan over every log the suite",
        "captured (`tests/leaks.py`; its count, the same in every row, covers the whole suite).",
        "Regenerate after `make test`: `.venv/bin/python -m tests.reliability_report`.",
    ]
    lines += ["", *_summary(results)]
    for run, title in TITLES.items():
        if run not in results:
            continue
        lines += ["", f"## {title}", "", "| measure | value |", "| --- | --- |"]
        lines += [f"| {key} | {_value(value)} |" for key, value in results[run].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    if not RESULTS.exists():
        print(f"no {RESULTS.relative_to(ROOT)}: run the slow tests first", file=sys.stderr)
        return 1
    PAGE.write_text(render(json.loads(RESULTS.read_text())))
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
