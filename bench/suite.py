"""Wall time of the full `make test`, read from the JUnit XML that `make test` writes.

The suite is not run here (it is long, and timing it belongs to no test): the bench reports the
last complete run, and says "not measured" when there is none.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from bench.project import TEMPLATE, Context
from bench.stats import Goal, Row, Sample, Spec

JUNIT = TEMPLATE / ".cache" / "junit.xml"
SUITE = Spec("full `make test` wall time (pytest's suite time)", Goal("<=", 900), None, "s")
SPECS = (SUITE,)


@dataclass(frozen=True)
class SuiteRun:
    seconds: float
    tests: int
    failures: int
    timestamp: str


def read_junit(text: str) -> SuiteRun:
    """pytest writes <testsuites><testsuite time= tests= failures= errors= timestamp=>."""
    root = ET.fromstring(text)  # noqa: S314 (our own pytest run's output)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    if not suites:
        raise ValueError("no <testsuite> in the JUnit XML")
    return SuiteRun(
        seconds=sum(float(s.get("time", 0)) for s in suites),
        tests=sum(int(s.get("tests", 0)) for s in suites),
        failures=sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites),
        timestamp=suites[0].get("timestamp", "unknown"),
    )


class SuiteNotClean(RuntimeError):
    """The suite's last run failed or is missing: its figures would describe broken code."""


def clean_run(junit: Path) -> SuiteRun:
    """The last `make test` run, if it passed; otherwise why docs/ may not be written from it."""
    shown = junit.relative_to(TEMPLATE) if junit.is_relative_to(TEMPLATE) else junit
    if not junit.exists():
        raise SuiteNotClean(f"there is no {shown}: run `make test` first.")
    try:
        run = read_junit(junit.read_text())
    except (ET.ParseError, ValueError) as error:
        raise SuiteNotClean(f"{shown} cannot be read ({error}): run `make test` again.") from None
    if run.failures or not run.tests:
        raise SuiteNotClean(
            f"{shown} records {run.failures} failed or erroring tests of {run.tests} "
            f"(run at {run.timestamp}): fix them and run `make test` again."
        )
    return run


def measure(ctx: Context) -> list[Row]:
    return [suite_row(JUNIT)]


def suite_row(junit: Path) -> Row:
    if not junit.exists():
        return Row(SUITE, note=f"no {junit.relative_to(TEMPLATE)}: run `make test`")
    run = read_junit(junit.read_text())
    note = f"{run.tests} tests, {run.failures} failed, run at {run.timestamp}"
    return Row(SUITE, Sample((run.seconds,)), note=note)
