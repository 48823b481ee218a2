"""A process's CPU time and peak memory from /proc (Linux): what Cloud Run bills, per process."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_cpu_seconds(stat: str) -> float:
    """utime + stime of a /proc/PID/stat line; the command name (field 2) may hold spaces and
    parentheses, so fields are counted from its closing parenthesis."""
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of the line; the state (field 3) is the first after the name.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def parse_peak_rss_mib(status: str) -> float:
    """VmHWM of /proc/PID/status: the resident set's high-water mark since the process began."""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError("no VmHWM line in the process status")


def cpu_seconds(pid: int) -> float:
    return parse_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())


def peak_rss_mib(pid: int) -> float:
    return parse_peak_rss_mib(Path(f"/proc/{pid}/status").read_text())
