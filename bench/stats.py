"""Samples, goals and rows: the pure part of the benchmark (unit-tested in tests/test_bench.py).

Every figure is a median of repeated runs, compared with a reference measured in the same run:
on shared machines absolute numbers drift, ratios taken minutes apart drift much less.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    """Repeated measurements of one quantity (its unit is the row's)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": min(self.values),
            "max": max(self.values),
            "runs": len(self.values),
            "values": list(self.values),
        }


@dataclass(frozen=True)
class Goal:
    """`x <op> limit`, where x is the ratio to the reference, or the median itself when the
    goal is absolute (no reference)."""

    op: str  # "<=" or ">="
    limit: float

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">="):
            raise ValueError(f"a goal compares with <= or >=, not {self.op!r}")

    def met(self, x: float) -> bool:
        return x <= self.limit if self.op == "<=" else x >= self.limit


@dataclass(frozen=True)
class Spec:
    """A row of the table before it is measured: what, against which reference, which goal."""

    name: str
    goal: Goal | None  # None: reported, no goal yet
    reference: str | None = None  # None: the goal is absolute, in `unit`
    unit: str = ""

    @property
    def goal_text(self) -> str:
        if self.goal is None:
            return "no goal"
        sign = "≤" if self.goal.op == "<=" else "≥"
        if self.reference:
            return f"{sign} {self.goal.limit:.2f} x {self.reference}"
        return f"{sign} {self.goal.limit:g} {self.unit}"


@dataclass(frozen=True)
class Row:
    """A measured row; without a value (or a reference the goal needs) it is "not measured",
    and `note` says why."""

    spec: Spec
    value: Sample | None = None
    reference: Sample | None = None
    note: str = ""

    @property
    def measured(self) -> bool:
        return self.value is not None and (
            self.spec.reference is None or self.reference is not None
        )

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.reference is None:
            return None
        return self.value.median / self.reference.median

    @property
    def compared(self) -> float | None:
        """What the goal is checked on: the ratio, or the median when the goal is absolute."""
        if self.value is None or not self.measured:
            return None
        return self.value.median if self.spec.reference is None else self.ratio

    @property
    def met(self) -> bool | None:
        compared = self.compared
        if compared is None or self.spec.goal is None:
            return None
        return self.spec.goal.met(compared)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "value": self.value.median if self.value else None,
            "reference": self.reference.median if self.reference else None,
            "ratio": self.ratio,
            "goal": self.spec.goal_text,
            "met": self.met,
            "unit": self.spec.unit,
            "reference_name": self.spec.reference,
            "value_runs": self.value.as_dict() if self.value else None,
            "reference_runs": self.reference.as_dict() if self.reference else None,
            "note": self.note,
        }


def alternate(
    runs: int, first: Callable[[], T], second: Callable[[], T]
) -> tuple[list[T], list[T]]:
    """Call both `runs` times, swapping which goes first each round, so that a change in the
    machine's load during the run falls on the measure and its reference alike."""
    a: list[T] = []
    b: list[T] = []
    for round_ in range(runs):
        if round_ % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    return a, b


def percentile(values: list[float], percent: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default): p50 is the median."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * percent / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def open_at(intervals: list[tuple[float, float]], at: float) -> int:
    """How many (start, end) intervals hold `at`: the streams open at that moment."""
    return sum(1 for start, end in intervals if start <= at < end)


def binned(
    points: list[tuple[float, float]],
    width: float,
    reduce: Callable[[list[float]], float],
    least: int = 1,
) -> list[tuple[float, float]]:
    """(x, y) points grouped in bins of `width` along x: (the bin's middle, `reduce` of its
    ys), for the bins with at least `least` points, in order of x."""
    bins: dict[int, list[float]] = {}
    for x, y in points:
        bins.setdefault(int(x // width), []).append(y)
    return [((index + 0.5) * width, reduce(ys)) for index, ys in sorted(bins.items())
            if len(ys) >= least]  # fmt: skip
