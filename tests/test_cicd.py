"""Generated CI/CD and dev loop: which files each provider gets, GitHub Actions workflows, the
Makefile's local targets, and cruft. (scripts/setup-github-wif.sh: test_setup_wif.py;
cloudbuild.yaml: test_cloudbuild.py.)

Every check runs a real tool offline: actionlint and zizmor on the workflows, make -n on the
Makefile, and cruft against a git clone of this template.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEMPLATE_ROOT, Bake

VENV_BIN = Path(sys.executable).parent
PROVIDER_FILES = {
    "github-actions": {
        ".github/workflows/ci.yml",
        ".github/workflows/deploy.yml",
        "scripts/setup-github-wif.sh",
    },
    "cloud-build": {"cloudbuild.yaml"},
    "none": set(),
}
ALL_PROVIDER_FILES = set().union(*PROVIDER_FILES.values())
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#|\bcookiecutter\.")
# owner/name@<40 hex> # vX.Y.Z : a full commit SHA with the version it is, for humans and bots.
PINNED_USES = re.compile(r"^\s*(?:-\s*)?uses:\s*[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


# --- Bakes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def github_project(bake_once: Bake) -> Path:
    return bake_once(ci_provider="github-actions")


def answers_of(project: Path) -> dict[str, Any]:
    answers: dict[str, Any] = json.loads((project / ".cookiecutter.json").read_text())
    return answers


@pytest.mark.parametrize("provider", list(PROVIDER_FILES))
def test_each_ci_provider_bakes_only_its_own_files(bake_once: Bake, provider: str) -> None:
    """The files of the providers not chosen are not generated; the chosen ones are. The scripts'
    shared library stays whatever the provider: deploy.sh sources it."""
    project = bake_once(ci_provider=provider)
    present = {path for path in ALL_PROVIDER_FILES if (project / path).exists()}
    assert present == PROVIDER_FILES[provider]
    if provider != "github-actions":
        assert not (project / ".github").exists()
    assert (project / "scripts/common.sh").is_file()


def test_scripts_write_the_answers_down_once(github_project: Path) -> None:
    """deploy.sh and setup-github-wif.sh read the answers' defaults from scripts/common.sh, so
    a service, region, secret or account name has no second copy in the scripts to drift."""
    scripts = [github_project / "deploy.sh", *sorted((github_project / "scripts").glob("*.sh"))]
    holders = {
        script.relative_to(github_project).as_posix()
        for script in scripts
        if re.search(r"^DEFAULT_[A-Z_]+='", script.read_text(), re.MULTILINE)
    }
    assert holders == {"scripts/common.sh"}
    answers = answers_of(github_project)
    common = (github_project / "scripts/common.sh").read_text()
    defaults = {
        "PROJECT_ID": "gcp_project_id",
        "REGION": "region",
        "SERVICE_NAME": "service_name",
        "SECRET_NAME": "secret_name",
    }
    for name, answer in defaults.items():
        assert f"DEFAULT_{name}='{answers[answer]}'" in common


@pytest.mark.parametrize("provider", ["github-actions", "cloud-build"])
def test_ci_files_keep_github_expressions_and_no_template_syntax(
    bake_once: Bake, provider: str
) -> None:
    """Only GitHub's `${{ }}` survives rendering; no other Jinja-like text is left behind."""
    project = bake_once(ci_provider=provider)
    for relative in PROVIDER_FILES[provider]:
        text = (project / relative).read_text()
        assert not TEMPLATE_SYNTAX.search(GITHUB_EXPRESSION.sub("", text)), relative
    if provider == "github-actions":
        deploy = (project / ".github/workflows/deploy.yml").read_text()
        assert "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}" in deploy


# --- GitHub Actions ------------------------------------------------------------------------


def workflows(project: Path) -> list[Path]:
    return sorted((project / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize("python_version", ["3.13", "3.11"])
def test_workflows_pass_actionlint(bake_once: Bake, python_version: str) -> None:
    """actionlint (with shellcheck on every `run:`) finds nothing in the generated workflows."""
    project = bake_once(ci_provider="github-actions", python_version=python_version)
    result = subprocess.run(
        [VENV_BIN / "actionlint", "-no-color", *workflows(project)],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_zizmor_offline(github_project: Path) -> None:
    """zizmor's security audits (permissions, pinning, injection, credentials) find nothing."""
    result = subprocess.run(
        [VENV_BIN / "zizmor", "--offline", "--no-progress", *workflows(github_project)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout


def test_every_action_is_pinned_to_a_commit_sha_with_its_version(github_project: Path) -> None:
    """A tag can be moved to other code; a full SHA cannot. The comment says which release.
    This repository's own workflows (`$/...`) are the commit being run, so they need no pin."""
    for workflow in workflows(github_project):
        uses = [line for line in workflow.read_text().splitlines() if "uses:" in line]
        assert uses, workflow
        for line in uses:
            if line.split("uses:", 1)[1].strip().startswith("$/.github/workflows/"):
                continue
            assert PINNED_USES.match(line), f"{workflow.name}: {line.strip()}"


def test_workflows_grant_least_privilege_and_time_out(github_project: Path) -> None:
    """No permission by default; each job asks for what it needs, and none can hang for 6 h (a
    job that calls a workflow takes its jobs' time limits)."""
    needs = {
        ("ci.yml", "test"): {"contents": "read"},
        ("deploy.yml", "test"): {"contents": "read"},
        ("deploy.yml", "setup-needed"): {},
        ("deploy.yml", "deploy"): {"contents": "read", "id-token": "write"},
    }
    seen = set()
    for workflow in workflows(github_project):
        data = yaml.safe_load(workflow.read_text())
        assert data["permissions"] == {}, workflow.name
        for name, job in data["jobs"].items():
            seen.add((workflow.name, name))
            assert job["permissions"] == needs[workflow.name, name]
            if "uses" not in job:
                assert 0 < job["timeout-minutes"] <= 30
    assert seen == set(needs)


def test_ci_runs_make_lint_test_on_the_chosen_python(bake_once: Bake) -> None:
    """CI runs the Makefile's lint and tests on pull requests and pushes, on the image's Python."""
    project = bake_once(ci_provider="github-actions", python_version="3.12")
    data = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
    assert {"pull_request", "push"} <= set(data[True])  # PyYAML reads the key `on` as True
    (job,) = data["jobs"].values()
    runs = [step.get("run") for step in job["steps"]]
    assert "make lint test" in runs
    setup = next(step for step in job["steps"] if "setup-python" in step.get("uses", ""))
    assert setup["with"]["python-version"] == "3.12"


def test_deploy_workflow_uses_wif_and_deploy_sh(github_project: Path) -> None:
    """Deploys from main (or by hand) with federated credentials, through deploy.sh itself."""
    data = yaml.safe_load((github_project / ".github/workflows/deploy.yml").read_text())
    assert data[True]["push"] == {"branches": ["main"]}
    assert "workflow_dispatch" in data[True]
    job = data["jobs"]["deploy"]
    auth = next(
        step for step in job["steps"] if "google-github-actions/auth" in step.get("uses", "")
    )
    assert set(auth["with"]) == {"workload_identity_provider", "service_account"}  # no JSON key
    assert job["steps"][-1]["run"].startswith("./deploy.sh")


GITHUB_CONDITION = re.compile(r"vars\.(\w+) (==|!=) ''|&&|\|\|")


def job_runs(condition: str, variables: dict[str, str]) -> bool:
    """Evaluate a job's `if:` made of `vars.X == ''` / `vars.X != ''`, && and || (GitHub's
    precedence: && before ||). An unset repository variable reads as ''."""
    tokens = [
        match.group(0) if match.group(1) is None
        else (variables.get(match.group(1), "") == "") == (match.group(2) == "==")
        for match in GITHUB_CONDITION.finditer(condition)
    ]  # fmt: skip
    assert GITHUB_CONDITION.sub("", condition).strip() == "", condition
    alternatives, current = [], True
    for part in tokens:
        if part == "||":
            alternatives.append(current)
            current = True
        elif part != "&&":
            current = current and bool(part)
    return any([*alternatives, current])


def test_deploy_waits_for_the_tests(github_project: Path) -> None:
    """A push to main deploys only after ci.yml, called as the `test` job, passed; ci.yml is
    callable, and its concurrency group differs between its own run and the one inside Deploy,
    so the two runs of one push cannot cancel each other."""
    ci = yaml.safe_load((github_project / ".github/workflows/ci.yml").read_text())
    deploy = yaml.safe_load((github_project / ".github/workflows/deploy.yml").read_text())
    assert "workflow_call" in ci[True]
    assert {"pull_request", "push"} <= set(ci[True])
    assert deploy["jobs"]["test"]["uses"] in {
        "./.github/workflows/ci.yml",
        "$/.github/workflows/ci.yml",
    }
    for name in ("deploy", "setup-needed"):
        assert deploy["jobs"][name]["needs"] == "test"
        # A custom `if:` without status functions still needs success() of `needs`.
        assert not re.search(r"always\(\)|failure\(\)|cancelled\(\)", deploy["jobs"][name]["if"])
    group = ci["concurrency"]["group"]
    assert "${{ github.workflow }}" in group  # "CI" on its own, the caller's name when called
    assert group.replace("${{ github.workflow }}", "CI") != group.replace(
        "${{ github.workflow }}", deploy["name"]
    )
    assert ci["concurrency"]["group"] != deploy["concurrency"]["group"]


@pytest.mark.parametrize(
    "variables",
    [{}, {"GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/1/x"},
     {"GCP_DEPLOYER_SERVICE_ACCOUNT": "d@p.iam.gserviceaccount.com"},
     {"GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/1/x",
      "GCP_DEPLOYER_SERVICE_ACCOUNT": "d@p.iam.gserviceaccount.com"}],
    ids=["none-set", "provider-only", "account-only", "both-set"],
)  # fmt: skip
def test_deploy_is_skipped_with_a_notice_until_wif_is_set_up(
    github_project: Path, variables: dict[str, str]
) -> None:
    """Before the one-time WIF setup a push to main must not fail: the deploy job runs only when
    both repository variables are set, and otherwise a job says what to set."""
    jobs = yaml.safe_load((github_project / ".github/workflows/deploy.yml").read_text())["jobs"]
    configured = len(variables) == 2
    assert job_runs(jobs["deploy"]["if"], variables) is configured
    assert job_runs(jobs["setup-needed"]["if"], variables) is not configured
    notice = jobs["setup-needed"]["steps"][0]["run"]
    assert notice.startswith('echo "::warning title=Deploy skipped::')
    for name in ("GCP_WORKLOAD_IDENTITY_PROVIDER", "GCP_DEPLOYER_SERVICE_ACCOUNT",
                 "scripts/setup-github-wif.sh"):  # fmt: skip
        assert name in notice


# --- Generated dev loop: Makefile and pyproject.toml ---------------------------------------


def test_make_run_reloads_on_app_changes_only(github_project: Path) -> None:
    """uvicorn --reload polls every file under its reload dirs; over the whole tree (.venv
    included) it costs CPU while idle, so `make run` watches app/ only."""
    result = subprocess.run(
        ["make", "-n", "run", "VENV=/nonexistent-venv"],
        cwd=github_project, capture_output=True, text=True, check=True,
    )  # fmt: skip
    (command,) = [line for line in result.stdout.splitlines() if "uvicorn" in line]
    argv = shlex.split(command)
    assert "--reload" in argv
    assert argv[argv.index("--reload-dir") + 1] == "app"
    assert argv.count("--reload-dir") == 1


@pytest.mark.parametrize(
    ("client_auth", "needs"),
    [("api-key", {"OPENAI_API_KEY", "CLIENT_API_KEYS"}), ("iam", {"OPENAI_API_KEY"}),
     ("none", {"OPENAI_API_KEY"})],
)  # fmt: skip
def test_make_docker_run_publishes_the_port_and_passes_what_the_mode_needs(
    bake_once: Bake, client_auth: str, needs: set[str]
) -> None:
    """Docker Desktop has no host network: the port is published (on 127.0.0.1 only) and PORT
    set to match; the variables the client_auth mode reads are passed by name, so no value is
    on the command line; client keys only where the mode reads them."""
    project = bake_once(client_auth=client_auth)
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "docker-run", "PORT=9123"],
        cwd=project, capture_output=True, text=True, check=True,
    )  # fmt: skip
    argv = shlex.split(result.stdout.replace("\\\n", " "))
    assert argv[:3] == ["docker", "run", "--rm"]
    assert "--network" not in argv
    assert argv[argv.index("-p") + 1] == "127.0.0.1:9123:9123"
    passed = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-e"]
    assert "PORT=9123" in passed
    by_name = {name for name in passed if "=" not in name}
    assert needs <= by_name
    assert ("CLIENT_API_KEYS" in by_name) is (client_auth == "api-key")
    assert argv[-1] == f"{answers_of(project)['service_name']}:dev"


@pytest.mark.parametrize("python_version", ["3.13", "3.12", "3.11"])
def test_pyproject_supports_every_python_the_template_offers(
    bake_once: Bake, python_version: str
) -> None:
    """The code runs on 3.11 to 3.13 whatever the container uses, so requires-python, ruff's
    target and mypy's python_version all say 3.11; only the Dockerfile and CI follow the answer."""
    project = bake_once(python_version=python_version)
    data = tomllib.loads((project / "pyproject.toml").read_text())
    assert data["project"]["requires-python"] == ">=3.11"
    assert data["tool"]["ruff"]["target-version"] == "py311"
    assert data["tool"]["mypy"]["python_version"] == "3.11"
    assert f"ARG PYTHON_IMAGE=python:{python_version}-slim" in (project / "Dockerfile").read_text()


# --- The update path: cruft ----------------------------------------------------------------

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Template Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def git(*args: str | Path, cwd: Path) -> None:
    env = {**os.environ, **GIT_IDENTITY}
    subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=cwd, env=env, check=True)


def cruft(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VENV_BIN / "cruft", *args],
        cwd=cwd,
        env={**os.environ, **GIT_IDENTITY},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cruft_update_brings_a_template_change_into_a_generated_service(tmp_path: Path) -> None:
    """cruft links a service to the template: a later template commit is detected and applied."""
    template = tmp_path / "template"
    git("clone", "--quiet", TEMPLATE_ROOT, template, cwd=tmp_path)
    created = cruft(
        "create", "--no-input", "--output-dir", tmp_path / "out", template, cwd=tmp_path
    )
    assert created.returncode == 0, created.stdout + created.stderr
    service = tmp_path / "out" / "my-service"
    assert json.loads((service / ".cruft.json").read_text())["template"] == str(template)
    git("init", "--quiet", cwd=service)
    git("add", "--all", cwd=service)
    git("commit", "--quiet", "--message", "Generated", cwd=service)
    assert cruft("check", cwd=service).returncode == 0

    line = "Template fix that every service should get."
    readme = template / "{{cookiecutter.__dir_name}}" / "README.md"
    readme.write_text(readme.read_text() + f"\n{line}\n")
    git("commit", "--quiet", "--all", "--message", "Template fix", cwd=template)

    stale = cruft("check", cwd=service)
    assert stale.returncode != 0
    assert "out of date" in stale.stdout + stale.stderr
    updated = cruft("update", "-y", cwd=service)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert line in (service / "README.md").read_text()
    assert cruft("check", cwd=service).returncode == 0
