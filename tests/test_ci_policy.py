"""Under CI=true a test that needs a missing tool fails; locally it skips with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEMPLATE_ROOT

NEEDS_MISSING_TOOL = """
from tests.conftest import require

def test_needs_a_tool():
    require(False, "the frobnicator is not installed")
"""


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", "1 failed"), ("", "1 skipped")], ids=["ci", "local"]
)
def test_missing_tool_fails_only_under_ci(tmp_path: Path, ci: str, outcome: str) -> None:
    test_file = tmp_path / "test_tool.py"
    test_file.write_text(NEEDS_MISSING_TOOL)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(TEMPLATE_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert outcome in result.stdout, result.stdout
    assert "the frobnicator is not installed" in result.stdout
