"""The base image to build a generated Dockerfile on: the official one, or the offline stand-in.

.ci/provision builds stand-ins for machines without a registry under their own names
(STAND_IN_PREFIX + the official name), so it never shadows a real `python:X-slim` on a
workstation. Builds pass the one to use as `--build-arg PYTHON_IMAGE=...`; without the argument
the Dockerfile names the official image, as a user builds it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

STAND_IN_PREFIX = "cloudrun-fastapi-ci/"
DEFAULT_IMAGE = re.compile(r"^ARG PYTHON_IMAGE=(\S+)$", re.MULTILINE)


def official_image(dockerfile: Path) -> str:
    """The `ARG PYTHON_IMAGE=` default: the image a plain `docker build` uses."""
    match = DEFAULT_IMAGE.search(dockerfile.read_text())
    assert match, f"{dockerfile} has no `ARG PYTHON_IMAGE=` default"
    return match[1]


def base_image(dockerfile: Path) -> str:
    """The offline stand-in when this engine has it, else the official image."""
    official = official_image(dockerfile)
    stand_in = STAND_IN_PREFIX + official
    found = subprocess.run(
        ["docker", "image", "inspect", stand_in], capture_output=True, timeout=60, check=False
    )
    return stand_in if found.returncode == 0 else official


def build_args(dockerfile: Path) -> list[str]:
    return ["--build-arg", f"PYTHON_IMAGE={base_image(dockerfile)}"]
