"""Trim the files of options not chosen, then tell the user which tools are missing.

Never fails for a missing tool: generation stays offline and side-effect free, so the checks are
presence checks only (`shutil.which`, `docker buildx version`), no network and no auth calls.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# {% raw %}
# option -> chosen value -> paths (relative to the generated repo) that only other values use.
REMOVE_UNLESS_CHOSEN: dict[str, dict[str, tuple[str, ...]]] = {
    "ci_provider": {
        "github-actions": (".github", "scripts/setup-github-wif.sh"),
        "cloud-build": ("cloudbuild.yaml",),
    },
    "openai_api": {
        "responses": ("app/core/apis/responses.py", "tests/api/routes/test_chat_responses.py"),
        "chat-completions": (
            "app/core/apis/chat_completions.py",
            "tests/api/routes/test_chat_chat_completions.py",
        ),
    },
    "client_auth": {
        "api-key": (
            "app/core/client_keys.py",
            "tests/core/test_client_keys.py",
            "tests/api/test_client_auth.py",
        ),
    },
}

EXECUTABLES = ("deploy.sh", "scripts/setup-github-wif.sh")


def paths_to_remove(answers: Mapping[str, Any]) -> list[str]:
    """Every path that belongs to an option value other than the chosen one."""
    return [
        path
        for option, owners in REMOVE_UNLESS_CHOSEN.items()
        for value, paths in owners.items()
        if answers.get(option) != value
        for path in paths
    ]


def remove_paths(root: Path, paths: list[str]) -> None:
    for relative in paths:
        target = root / relative
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def make_executable(root: Path) -> None:
    for relative in EXECUTABLES:
        script = root / relative
        if script.exists():
            script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def buildx_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "buildx", "version"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


# tool -> (is it there?, what it is for, where to get it)
TOOLS: tuple[tuple[str, Callable[[], bool], str, str], ...] = (
    (
        "gcloud",
        lambda: shutil.which("gcloud") is not None,
        "deploy.sh and Secret Manager",
        "https://cloud.google.com/sdk/docs/install",
    ),
    (
        "docker",
        lambda: shutil.which("docker") is not None,
        "make docker-build / docker-run and local builds (else deploy.sh uses Cloud Build)",
        "https://docs.docker.com/get-docker/",
    ),
    (
        "docker buildx",
        buildx_available,
        "linux/amd64 builds on Apple silicon (deploy.sh falls back to docker build)",
        "https://docs.docker.com/build/install-buildx/",
    ),
)


def tool_report() -> list[str]:
    lines = []
    for name, present, purpose, link in TOOLS:
        if present():
            lines.append(f"  found    {name}")
        else:
            lines.append(f"  missing  {name}: needed for {purpose}; install: {link}")
    return lines


def open_service_warning(answers: Mapping[str, Any]) -> list[str]:
    if answers.get("client_auth") != "none":
        return []
    return [
        "",
        "WARNING: client_auth=none makes the service public and open: anyone who finds the URL",
        "can spend your OpenAI budget. Only max_instances="
        f"{answers.get('max_instances')} (with the per-instance rate limit) bounds the cost.",
        "Use client_auth=iam or api-key for anything but a demo.",
    ]


def next_steps(answers: Mapping[str, Any], root: Path) -> list[str]:
    return [
        "",
        f"Generated {root}",
        "Tools:",
        *tool_report(),
        *open_service_warning(answers),
        "",
        "Next steps:",
        f"  cd {root}",
        "  make install     # virtualenv with the service and its dev tools",
        "  make test        # offline tests",
        "  make run         # http://127.0.0.1:8080 (set OPENAI_API_KEY first)",
        "  ./deploy.sh      # build, push and deploy to Cloud Run (--help for options)",
    ]


def main(answers: Mapping[str, Any], root: Path) -> int:
    remove_paths(root, paths_to_remove(answers))
    make_executable(root)
    print("\n".join(next_steps(answers, root)))
    return 0


# {% endraw %}
if __name__ == "__main__":
    # cookiecutter runs this hook from inside the generated repo.
    sys.exit(main(json.loads(r"""{{ cookiecutter | tojson }}"""), Path.cwd()))
