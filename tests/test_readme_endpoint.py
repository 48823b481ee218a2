"""The generated README's "Add your own endpoint" example, added to a baked service exactly as
the README says, is guarded like every /v1 route: refused without a key (api-key), rate limited,
in the error shape, documented with the guard's statuses, and clean under ruff and mypy."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Bake

SECTION = re.compile(r"^## Add your own endpoint\n(.*?)^## ", re.MULTILINE | re.DOTALL)
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)

# Run inside the baked project with its own fixtures (tests/conftest.py).
CHECK = """
from tests.conftest import CLIENT_AUTH, MakeClient


def test_the_readme_endpoint_is_guarded(make_client: MakeClient, auth: dict[str, str]) -> None:
    client = make_client(RATE_LIMIT_PER_MINUTE="2", DOCS_ENABLED="1")
    url, body = "/v1/word-count", {"text": "one two three"}
    if CLIENT_AUTH == "api-key":
        refused = client.post(url, json=body)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "unauthorized"
    answer = client.post(url, json=body, headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["words"] == 3
    invalid = client.post(url, json={"text": ""}, headers=auth)
    assert invalid.status_code == 422
    assert set(invalid.json()) == {"error"}
    limited = client.post(url, json=body, headers=auth)
    assert limited.status_code == 429
    assert limited.headers["retry-after"]
    operation = client.get("/openapi.json").json()["paths"][url]["post"]
    assert "429" in operation["responses"]
    assert ("security" in operation) == (CLIENT_AUTH == "api-key")
"""


def add_readme_endpoint(project: Path) -> None:
    """Create the README's file and include its router in app/main.py, as the README says."""
    section = SECTION.search((project / "README.md").read_text())
    assert section, "the README has no 'Add your own endpoint' section"
    route_code, main_lines = BLOCK.findall(section[1])
    target = re.findall(r"`(app/api/routes/\w+\.py)`", section[1])[0]  # the file it creates
    (project / target).write_text(route_code)
    import_line, include_line = (line for line in main_lines.splitlines() if line.strip())
    main = project / "app/main.py"
    text = re.sub(r"^from app\.api\.routes import .*$", import_line, main.read_text(), flags=re.M)
    last_include = list(re.finditer(r"^ *app\.include_router\(.*\)$", text, flags=re.M))[-1]
    text = text[: last_include.end()] + "\n" + include_line + text[last_include.end() :]
    main.write_text(text)


def run(venv: Path, project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("mode", ["api-key", "iam", "none"])
def test_the_readme_endpoint_is_guarded_once_added(
    bake_once: Bake, service_venv: Callable[[Path], Path], tmp_path: Path, mode: str
) -> None:
    project = tmp_path / "service"
    shutil.copytree(bake_once(client_auth=mode), project)
    venv = service_venv(project)
    add_readme_endpoint(project)
    (project / "tests/test_readme_endpoint.py").write_text(CHECK)
    tests = run(
        venv, project, "pytest", "-q", "-p", "no:cacheprovider", "tests/test_readme_endpoint.py"
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    lint = run(venv, project, "ruff", "check", "app")
    assert lint.returncode == 0, lint.stdout
    if mode == "api-key":  # the example is the same in every mode: type-check it once
        types = run(venv, project, "mypy", "app")
        assert types.returncode == 0, types.stdout
