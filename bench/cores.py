"""Where each process runs: the measured app alone on one core, everything that loads or feeds
it (the bench itself, wrk, the load generator, the fake upstream, Redis) on the others.

A Cloud Run instance with `--cpu 1` has one vCPU. On a small machine, a load generator that
shares the app's core takes its CPU in the middle of a measure: first tokens wait for wrk, not
for the app, and requests/s move with the scheduler from run to run. With one core only,
nothing is pinned and the report says so.
"""

from __future__ import annotations

import os

AVAILABLE = tuple(sorted(os.sched_getaffinity(0)))
# The app's core and the others; with a single core there is nothing to keep apart.
APP, OTHERS = (AVAILABLE[:1], AVAILABLE[1:]) if len(AVAILABLE) > 1 else ((), AVAILABLE)


def cpu_list(cpus: tuple[int, ...]) -> str:
    """`0` or `1,2,3`: the form taskset, docker and the report take."""
    return ",".join(map(str, cpus))


def pin_bench() -> None:
    """The bench process on the other cores: every child it starts inherits them (call it
    before any thread or child is started)."""
    os.sched_setaffinity(0, OTHERS)


def app_prefix() -> list[str]:
    """What a measured app's command line starts with (`taskset` execs it: the same pid)."""
    return ["taskset", "--cpu-list", cpu_list(APP)] if APP else []


def docker_options() -> list[str]:
    """The same core for a measured container."""
    return ["--cpuset-cpus", cpu_list(APP)] if APP else []


def note() -> str:
    if not APP:
        return "One core only: the apps shared it with the load generators (nothing pinned)."
    return (
        f"Cores: each measured app (process or container) ran alone on core {cpu_list(APP)}, "
        f"as one vCPU (`--cpu 1`) on Cloud Run; the bench, wrk, the load generator, the fake "
        f"upstream and Redis ran on core(s) {cpu_list(OTHERS)}."
    )
