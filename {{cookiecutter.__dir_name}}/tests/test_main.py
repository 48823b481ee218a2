"""Importing the app reads no environment: settings are read when the lifespan starts."""

from __future__ import annotations

import gc
import importlib

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
