"""Importing the app reads no environment: settings are read when the lifespan starts."""

from __future__ import annotations

import gc
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import app.main
from app.core.config import get_settings


def test_importing_the_app_reads_no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken variable does not break the import, only the start of the lifespan."""
    monkeypatch.setenv("OPENAI_TIMEOUT_SECONDS", "not-a-number")
    get_settings.cache_clear()
    importlib.reload(app.main)
    assert get_settings.cache_info().currsize == 0
    with pytest.raises(ValueError, match="openai_timeout_seconds"), TestClient(app.main.app):
        pass
    get_settings.cache_clear()


def test_importing_the_app_leaves_the_collector_on_with_start_up_frozen() -> None:
    """The import pauses garbage collection; it must come back on, whatever the import did."""
    gc.unfreeze()
    importlib.reload(app.main)
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


# In a fresh interpreter: the test runner's own allocations would blur the counts.
COLLECTIONS = """
import gc, weakref
import app.main

runs = []
gc.callbacks.append(lambda phase, info: phase == "stop" and runs.append(info["generation"]))

class Node:
    pass

# What open streams hold: objects that live on, freed one by one later.
held = [{"chunk": n} for n in range(app.main.YOUNG_COLLECTION_THRESHOLD // 2)]
print(len(runs))
del held

# Cyclic garbage, which only the collector frees: a collection must still come.
def cycle():
    node = Node()
    node.self = node
    return weakref.ref(node)

first = cycle()
for _ in range(app.main.YOUNG_COLLECTION_THRESHOLD):
    cycle()
print(len(runs), first() is None)
"""


def test_long_lived_objects_start_no_collection_and_cycles_still_do() -> None:
    """Objects that open streams hold for seconds do not start collections (each would walk all
    of them and stall the loop); garbage in cycles is still collected."""
    done = subprocess.run(
        [sys.executable, "-c", COLLECTIONS],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    during_holds, after_cycles = done.stdout.splitlines()
    assert during_holds == "0"
    collections, freed = after_cycles.split()
    assert int(collections) >= 1
    assert freed == "True"
