"""The real gcloud CLI as a parser: a fixture that asserts a command line is well formed.

With no account and a throwaway configuration, gcloud checks every argument before it
authenticates, so a correct line ends at "no active account" (rc 1) and a wrong flag or value ends
earlier with a parse or validation error. Import `gcloud_parses` into a test module to use it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

NO_ACCOUNT = "You do not currently have an active account selected"
Parses = Callable[[list[str], Path], None]


@pytest.fixture
def gcloud_parses(real_gcloud: str, tmp_path: Path) -> Parses:
    """Assert that the real gcloud accepts ARGV, run from CWD, up to authentication."""
    home = tmp_path / "gcloud-home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    }

    def check(argv: list[str], cwd: Path) -> None:
        result = subprocess.run(
            [real_gcloud, *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0 or NO_ACCOUNT in output, (
            f"gcloud {shlex.join(argv)}\n{output}"
        )

    return check
