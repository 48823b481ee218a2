"""The repository and what it generates speak of the product only: no paths of the machine they
were written on, no sentences about the template's own tests or tooling in a generated repo, no
measurements in the service's comments."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEMPLATE_ROOT, Bake

# A home, a workspace or a session's scratch folder of some machine. The workspace root is
# written as `/(?:work)/` and the examples below as `WORKSPACE`, so this file does not itself
# name the path it looks for.
WORKSPACE = "/" + "work"
MACHINE_PATH = re.compile(
    r"/(?:work)/|(?<![\w.])/root(?![\w-])|/home/[a-z_][\w.-]*|/Users/[A-Za-z][\w.-]*|/var/folders/"
    r"|/tmp/[\w.${}-]+"
)
# /tmp paths that are part of the product, each with its reason.
ALLOWED_TMP = {
    "/tmp/dockerd.log": ".ci/provision: where the engine it starts logs",
    "/tmp/debootstrap-$suite.log": ".ci/provision: the stand-in image builds' logs",
    "/tmp/absolute": "tests/test_generation.py: a hostile service name",
}


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=TEMPLATE_ROOT, capture_output=True, check=True
    ).stdout.decode()
    paths = [TEMPLATE_ROOT / name for name in listed.split("\0") if name]
    return [path for path in paths if path.is_file() and b"\0" not in path.read_bytes()[:4096]]


def machine_paths(text: str) -> list[str]:
    return [found for found in MACHINE_PATH.findall(text) if found not in ALLOWED_TMP]


def test_machine_path_pattern_catches_what_it_should() -> None:
    """The scan itself: session paths are caught, product paths and look-alikes are not."""
    caught = f"cd {WORKSPACE}/main; /root/.cache; /home/dev/x; /Users/ann/src; /tmp/g16-b; /tmp/x"
    assert len(machine_paths(caught)) == 6
    assert machine_paths("/tmp/dockerd.log /app/root /rootfs $rootfs/etc chroot /secrets/x") == []


def test_no_tracked_file_names_a_path_of_the_machine_it_was_written_on() -> None:
    found = [
        f"{path.relative_to(TEMPLATE_ROOT)}: {hit}"
        for path in tracked_text_files()
        if path != Path(__file__)  # its examples above are the pattern's own test
        for hit in machine_paths(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert found == []


# Sentences about the template's machinery rather than about the user's service.
MACHINERY = re.compile(
    r"template(?:'s own)? tests?\b|a test (?:keeps|compares|proves|holds)|owned by one part"
    r"|builds? offline|offline (?:CI|stand-?ins?)|\.ci/|measured here|\(measured|measured:",
    re.IGNORECASE,
)
BAKES: dict[str, dict[str, Any]] = {
    "iam-github": {},
    "api-key-cloud-build": {"client_auth": "api-key", "ci_provider": "cloud-build"},
}


@pytest.mark.parametrize("answers", BAKES.values(), ids=BAKES.keys())
def test_generated_files_speak_of_the_service_not_of_the_template(
    bake_once: Bake, answers: dict[str, Any]
) -> None:
    """No generated file mentions the template's own tests, CI or measurements."""
    project = bake_once(**answers)
    found = [
        f"{path.relative_to(project)}:{number}: {line.strip()}"
        for path in sorted(project.rglob("*"))
        if path.is_file()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if MACHINERY.search(line)
    ]
    assert found == []
