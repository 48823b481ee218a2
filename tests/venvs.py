"""Virtualenvs with a generated repo's pinned requirements, shared by the template tests and the
benchmarks, and reused while the pins and the Python that runs them stay the same."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import venv
from pathlib import Path

VENV_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "venvs"


def requirements_digest(project: Path) -> str:
    digest = hashlib.sha256()
    for name in ("requirements.txt", "requirements-dev.txt"):
        digest.update((project / name).read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def service_venv_for(project: Path) -> Path:
    """A venv with `project`'s requirements-dev.txt (which includes requirements.txt)."""
    target = VENV_CACHE / requirements_digest(project)
    if not (target / ".installed").exists():
        shutil.rmtree(target, ignore_errors=True)
        venv.create(target, with_pip=True)
        subprocess.run(
            [target / "bin" / "pip", "install", "-q", "-r", project / "requirements-dev.txt"],
            check=True,
        )
        (target / ".installed").touch()
    return target
