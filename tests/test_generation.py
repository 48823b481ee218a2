"""Rendering the template: supported combinations bake clean, bad answers leave nothing behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.environment import StrictEnvironment

from hooks import pre_gen_project
from tests.conftest import TEMPLATE_ROOT, Bake

LONGEST_NAME = "svc-" + "x" * 44 + "z"  # 49 characters, the Cloud Run maximum

SUPPORTED = {
    "defaults": {},
    "python-3.11": {"python_version": "3.11"},
    "python-3.12": {"python_version": "3.12"},
    "public-api-key": {"client_auth": "api-key"},
    "public-open": {"client_auth": "none"},
    "warm-instance": {"min_instances": 1, "max_instances": 10},
    "single-instance": {"min_instances": 0, "max_instances": 1},
    "longest-name": {"service_name": LONGEST_NAME},
    "one-letter-name": {"service_name": "a"},
    "europe": {"region": "europe-west1", "gcp_project_id": "acme-prod-eu"},
    "seoul": {"region": "asia-northeast3", "secret_name": "OPENAI_KEY"},
    "cloud-build": {"ci_provider": "cloud-build"},
    "no-ci": {"ci_provider": "none"},
    "chat-completions": {"openai_api": "chat-completions"},
    "chat-completions-api-key": {"openai_api": "chat-completions", "client_auth": "api-key"},
}

TEXT_SUFFIXES = {".py", ".sh", ".md", ".toml", ".txt", ".yml", ".yaml", ".cfg", ".ini", ".json"}
TEXT_NAMES = {"Dockerfile", "Makefile", ".dockerignore", ".gcloudignore", ".gitattributes"}
# GitHub expressions are meant to stay; everything else Jinja-like is a rendering leftover.
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
LEFTOVER = re.compile(r"\{\{|\{%|\{#|(?<![.\w])cookiecutter\.(?!json)")


def text_files(project: Path) -> list[Path]:
    return [
        path
        for path in sorted(project.rglob("*"))
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES)
    ]


@pytest.fixture(params=list(SUPPORTED), ids=list(SUPPORTED))
def supported(request: pytest.FixtureRequest, bake_once: Bake) -> tuple[Path, dict[str, Any]]:
    answers = SUPPORTED[request.param]
    return bake_once(**answers), answers


def test_bakes_into_folder_named_after_the_service(
    supported: tuple[Path, dict[str, Any]],
) -> None:
    project, answers = supported
    assert project.name == answers.get("service_name", "my-service")
    assert (project / "README.md").is_file()


def test_leaves_no_template_syntax_in_any_text_file(
    supported: tuple[Path, dict[str, Any]],
) -> None:
    """No `{{`, `{%`, `{#` or `cookiecutter.` survives rendering (the answers file excepted)."""
    project, _ = supported
    leftovers = []
    for path in text_files(project):
        if path.name == ".cookiecutter.json":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if LEFTOVER.search(GITHUB_EXPRESSION.sub("", line)):
                leftovers.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    assert leftovers == []


def test_shell_scripts_use_lf_and_deploy_script_is_executable(
    supported: tuple[Path, dict[str, Any]],
) -> None:
    """Scripts run on Linux runners and macOS: LF endings, and the exec bit on every script
    with a shebang (sourced libraries have none)."""
    project, _ = supported
    for script in project.rglob("*.sh"):
        content = script.read_bytes()
        assert b"\r\n" not in content, script
        if content.startswith(b"#!"):
            assert os.access(script, os.X_OK), script
    assert os.access(project / "deploy.sh", os.X_OK)


def test_records_the_answers_for_later_updates(supported: tuple[Path, dict[str, Any]]) -> None:
    """`.cookiecutter.json` holds every answer, so cruft can update the service later."""
    project, answers = supported
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    for key, value in answers.items():
        assert recorded[key] == str(value)
    defaults = json.loads((TEMPLATE_ROOT / "cookiecutter.json").read_text())
    public_keys = {key for key in defaults if not key.startswith("_")}
    assert public_keys == set(recorded)  # no machine-local paths such as _output_dir


def test_git_ignores_virtualenvs_secrets_and_caches(default_project: Path, tmp_path: Path) -> None:
    """A first `git add .` in the generated repo picks up neither .venv, .env nor caches."""
    repo = tmp_path / "repo"
    shutil.copytree(default_project, repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    paths = [".venv/bin/python", ".env", ".env.local", "app/__pycache__/main.cpython-313.pyc"]
    paths += [".pytest_cache/v", ".mypy_cache/x", ".ruff_cache/x"]
    for path in paths:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text("x")
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.split() == paths
    tracked = subprocess.run(
        ["git", "check-ignore", "--no-index", "app/main.py", "deploy.sh", ".gitignore"],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    assert tracked.returncode == 1  # none of the repo's own files is ignored


def test_baked_python_passes_ruff(
    supported: tuple[Path, dict[str, Any]],
) -> None:
    """The rendered service is lint- and format-clean with its own ruff configuration."""
    project, _ = supported
    ruff = Path(sys.executable).parent / "ruff"
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [ruff, *command], cwd=project, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def render_default(name: str, service_name: str) -> str:
    template = json.loads((TEMPLATE_ROOT / "cookiecutter.json").read_text())[name]
    env = StrictEnvironment(context={"cookiecutter": {}})
    return env.from_string(template).render(cookiecutter={"service_name": service_name})


def valid_service_names() -> list[str]:
    """Names of every length from 1 to 49, with hyphens around the 30-character cut."""
    names = ["a" * length for length in range(1, 50)]
    names += ["ab-" * 16 + "a", "a" + "-" * 28 + "b" * 20, "abcde-" + "f" * 43, "a-b", "ab-cd"]
    names += [("x" * cut + "-" + "y" * 48)[:49] for cut in range(1, 31)]
    return names


def test_derived_service_account_id_is_valid_for_every_valid_service_name() -> None:
    """The default account ID is truncated, trimmed and padded into the 6-30 character rule."""
    for name in valid_service_names():
        assert pre_gen_project.check_service_name(name) is None, name
        derived = render_default("service_account_id", name)
        assert pre_gen_project.check_service_account_id(derived) is None, (name, derived)


def test_hook_derivation_of_the_account_id_matches_cookiecutter_json() -> None:
    """The pre-gen hook recognises the derived default by recomputing it the same way."""
    for name in valid_service_names():
        derived = pre_gen_project.derive_service_account_id({"service_name": name})
        assert derived == render_default("service_account_id", name), name


def test_derived_service_account_id_keeps_valid_names_unchanged() -> None:
    assert render_default("service_account_id", "my-service") == "my-service"
    assert render_default("service_account_id", "api") == "api-runner"


def test_folder_name_equals_every_valid_service_name() -> None:
    for name in valid_service_names():
        assert render_default("__dir_name", name) == name


MARKER = "PWNED_MARKER"


def hostile_answers(marker: Path) -> list[dict[str, Any]]:
    """Shell and Jinja payloads, path tricks, look-alikes, empties and over-long values."""
    touch = f"touch {marker}"
    return [
        {"service_name": f"$({touch})"},
        {"service_name": f"`{touch}`"},
        {"service_name": f"svc; {touch}"},
        {"service_name": f"svc && {touch}"},
        {"service_name": f"svc | {touch}"},
        {"service_name": f"svc'; {touch}; echo '"},
        {"service_name": f'svc"; {touch}; echo "'},
        {"service_name": "svc\nrm -rf /"},
        {"service_name": "../escape"},
        {"service_name": "a/b/c"},
        {"service_name": "/tmp/absolute"},
        {"service_name": ".."},
        {"service_name": ""},
        {"service_name": " "},
        {"service_name": "My-Service"},
        {"service_name": "my-serv\u0456ce"},  # Cyrillic i
        {"service_name": "\uff4d\uff59-service"},  # full-width m and y
        {"service_name": "x" * 50},
        {"service_name": "{{ 7 * 7 }}"},
        {"service_name": "{{ cookiecutter.region }}"},
        {"service_name": "svc{# comment #}"},
        {"region": "{{ 'us-east1' }}"},  # renders to a valid region: refused as markup
        {"gcp_project_id": f"proj$({touch})"},
        {"gcp_project_id": "x" * 31},
        {"region": f"us-central1; {touch}"},
        {"region": "us-central1\n"},
        {"region": "US-CENTRAL1"},
        {"region": "us-east1-d"},
        {"region": "eu"},
        {"secret_name": f"key`{touch}`"},
        {"secret_name": "key with spaces"},
        {"secret_name": "s" * 256},
        {"artifact_registry_repo": f"repo$({touch})"},
        {"service_account_id": f"sa;{touch}"},
        {"openai_model": f"gpt-4o$({touch})"},
        {"openai_model": "gpt 4o"},
        {"openai_model": ""},
        {"description": f"desc $({touch})"},
        {"description": 'desc """; import os; os.system("x"); """'},
        {"description": "line\nbreak"},
        {"min_instances": "-1"},
        {"min_instances": "1; reboot"},
        {"max_instances": "0"},
        {"max_instances": "1e3"},
        {"min_instances": "9", "max_instances": "3"},
        # Option injection, Unicode digits and invisibles, resource paths, choices off the list.
        {"service_name": "--help"},
        {"service_name": "svc-"},
        {"service_name": "my\u200bservice"},  # zero-width space
        {"service_name": "svc\u202e"},  # right-to-left override
        {"gcp_project_id": "proj --impersonate-service-account=x"},
        {"secret_name": "--data-file=/etc/passwd"},
        {"secret_name": "projects/p/secrets/key"},
        {"region": "us-central1 "},
        {"region": "us-central1\u200b"},
        {"openai_model": "gpt-4o-mini --flag"},
        {"service_account_id": "runner\u0430bc"},  # Cyrillic a
        {"artifact_registry_repo": "repo/../x"},
        {"min_instances": "\u0663"},  # Arabic-Indic 3: Python's int() and \d accept it
        {"max_instances": "\uff15"},  # full-width 5
        {"max_instances": "5 "},
        {"description": "{{ cookiecutter.secret_name }}"},
        {"python_version": "3.10"},
        {"client_auth": "IAM"},
    ]


def test_hostile_corpus_is_large_enough(tmp_path: Path) -> None:
    assert len(hostile_answers(tmp_path / MARKER)) >= 30


@pytest.mark.parametrize("case", range(len(hostile_answers(Path(MARKER)))))
def test_rejects_hostile_answer_and_leaves_nothing(case: int, cookies: Any, tmp_path: Path) -> None:
    """Every hostile or malformed answer fails generation: no output folder, no payload ran."""
    marker = tmp_path / MARKER
    answers = hostile_answers(marker)[case]
    result = cookies.bake(extra_context=answers)
    assert result.exit_code != 0
    assert result.exception is not None
    # pytest-cookies makes an empty bakeNN output folder per bake; nothing may appear inside it.
    assert list((tmp_path / "cookies").glob("*/*")) == []
    assert not marker.exists()


def test_rejection_message_names_variable_rule_and_example(cookies: Any, capfd: Any) -> None:
    result = cookies.bake(extra_context={"region": "us-east1-d", "service_name": "Bad_Name"})
    assert type(result.exception).__name__ == "FailedHookException"
    stderr = capfd.readouterr().err
    assert "region: us-east1-d is a zone; Cloud Run needs a region such as us-east1" in stderr
    assert "service_name: 'Bad_Name' is not a Cloud Run service name" in stderr
    assert "(e.g. my-service)" in stderr
