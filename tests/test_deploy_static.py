"""deploy.sh and its scripts as files: shellcheck and bash -n for every supported combination, no
template residue, and every gcloud line the scenarios record replayed through the real gcloud.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Bake, require
from tests.fixtures.deploy import (
    CLIENT_KEYS,
    SHELLCHECK,
    TEST_KEY,
    Sandbox,
    Sandboxes,
    SmokeServer,
    printed_gcloud_lines,
    replay_all,
    replayable,
)

# --- Static checks on every supported combination ---------------------------------------------

COMBINATIONS = {
    "iam-github-actions": {"client_auth": "iam", "ci_provider": "github-actions"},
    "api-key-cloud-build": {"client_auth": "api-key", "ci_provider": "cloud-build"},
    "none-no-ci": {"client_auth": "none", "ci_provider": "none"},
    "49-character-name": {"service_name": "s" + "-long" * 9 + "-x1"},
    "non-us-region": {"region": "asia-northeast3", "gcp_project_id": "tokyo-project-42"},
}


COMBINATIONS_BY_PATH: dict[Path, str] = {}


@pytest.fixture(scope="session", params=sorted(COMBINATIONS))
def combination(request: pytest.FixtureRequest, bake_once: Bake) -> Path:
    project = bake_once(**COMBINATIONS[request.param])
    COMBINATIONS_BY_PATH[project] = request.param
    return project


def test_rendered_scripts_pass_shellcheck_and_bash_n(combination: Path) -> None:
    """deploy.sh and every script it sources (scripts/*.sh, each subcommand in scripts/deploy/)
    are shellcheck clean, on their own and followed from deploy.sh, and parse, whatever the
    answers."""
    require(SHELLCHECK.exists(), f"shellcheck is not installed at {SHELLCHECK}; run make install")
    assert len(COMBINATIONS["49-character-name"]["service_name"]) == 49
    scripts = sorted(str(p.relative_to(combination)) for p in combination.rglob("scripts/**/*.sh"))
    assert {"scripts/deploy/rollout.sh", "scripts/deploy/destroy.sh"} <= set(scripts)
    result = subprocess.run(
        [str(SHELLCHECK), "-x", "deploy.sh", *scripts],
        cwd=combination, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    for script in ["deploy.sh", *scripts]:
        subprocess.run(["bash", "-n", script], cwd=combination, check=True)
    assert os.access(combination / "deploy.sh", os.X_OK)


# Jinja statement and comment delimiters (bash's `${#var}` is not one), and the raw markers' words.
TEMPLATE_RESIDUE = re.compile(r"\{%|%\}|(?<!\$)\{#|#\}|\bend ?raw\b")


def test_rendered_scripts_leave_no_template_residue(combination: Path) -> None:
    """The Jinja raw markers around the bash leave no trace: no stray `#` line, no trailing
    whitespace, no marker text, in deploy.sh and in every script under scripts/."""
    scripts = [combination / "deploy.sh", *sorted((combination / "scripts").rglob("*.sh"))]
    if COMBINATIONS_BY_PATH.get(combination) == "iam-github-actions":
        assert combination / "scripts" / "setup-github-wif.sh" in scripts
    residue = [
        f"{script.relative_to(combination)}:{number}: {line!r}"
        for script in scripts
        for number, line in enumerate(script.read_text().splitlines(), 1)
        if line != line.rstrip() or line.strip() == "#" or TEMPLATE_RESIDUE.search(line)
    ]
    assert residue == []
    for script in scripts:
        text = script.read_text()
        assert text.endswith("\n")
        assert not text.endswith("\n\n")


def test_rendered_defaults_pass_deploy_validation(combination: Path, sandbox: Sandboxes) -> None:
    """The answers the hook accepted are accepted by deploy.sh too (dry run succeeds)."""
    run = sandbox().run(combination, "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "+ gcloud run deploy" in run.stdout


# --- Every recorded gcloud line through the real gcloud parser --------------------------------


SETTINGS = [
    "--env", "OPENAI_MODEL=gpt-4o", "--env=RATE_LIMIT_PER_MINUTE=30",
    "--env", "OPENAI_MAX_TOKENS=512", "--env", "OPENAI_BASE_URL=https://x.example/v1",
    "--concurrency=1000", "--cpu=2", "--memory=8Gi", "--timeout=3600", "--keep-images=3",
]  # fmt: skip
CI_ACCOUNT = "ci@acme-prod-42.iam.gserviceaccount.com"
SECRETS = {"OPENAI_API_KEY": TEST_KEY, "CLIENT_API_KEYS": CLIENT_KEYS}
# Each scenario: answers, docker on PATH, then the runs in order (arguments, extra environment).
SCENARIOS: list[tuple[dict[str, str], bool, list[tuple[list[str], dict[str, str]]]]] = [
    ({"client_auth": "iam"}, True, [
        (SETTINGS, SECRETS), ([], {"SMOKE_IMPERSONATE_SERVICE_ACCOUNT": CI_ACCOUNT}),
        (["--canary", "10"], {}), (["promote"], {}), (["rollback"], {}),
        (["rollback", "my-service-00001-abc"], {}), (["status"], {}), (["logs"], {}),
        (["logs", "--tail", "--limit=5"], {}), (["destroy", "--dry-run"], {}),
        (["destroy", "--yes"], {}), (["destroy", "--yes", "--delete-secrets"], {}),
    ]),
    ({"client_auth": "api-key"}, False, [
        (SETTINGS, SECRETS), ([], {}), (["destroy", "--yes", "--delete-secrets"], {}),
    ]),
    ({"client_auth": "none", "ci_provider": "cloud-build"}, True, [([], SECRETS), ([], {})]),
    ({"client_auth": "api-key"}, True, [
        (["--dry-run"], {}), (["promote", "--dry-run"], {}), (["rollback", "--dry-run"], {}),
        (["status", "--dry-run"], {}),
    ]),
]  # fmt: skip


@pytest.fixture(scope="module")
def recorded_gcloud_lines(
    baked: Bake,
    system_bin: Path,
    smoke_server: SmokeServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[list[str]]]:
    """Every distinct gcloud command line of every subcommand: each mode, local and remote builds,
    rerun (rollout), canary, promote, rollback, status, logs, destroy, runtime settings and sizing,
    an impersonated identity token, dry runs (the lines they print), and the grants a failed
    remote build tells the user to run."""
    root = tmp_path_factory.mktemp("recorded")
    scratch = root / "policies"
    scratch.mkdir()
    lines: list[list[str]] = []
    for number, (answers, docker, runs) in enumerate(SCENARIOS):
        box = Sandbox(root / str(number), system_bin, docker, smoke_server.url())
        for args, env in runs:
            run = box.run(baked(**answers), *args, **env)
            assert run.returncode == 0, (args, run.stderr)
            printed = [shlex.split(line[2:])[1:] for line in run.stdout.splitlines()
                       if line.startswith("+ gcloud ") and "--policy=" not in line]  # fmt: skip
            for argv in [*replayable(run.calls, scratch), *printed]:
                if argv not in lines:
                    lines.append(argv)
    failed = Sandbox(root / "failed-build", system_bin, False, smoke_server.url()).run(
        baked(), OPENAI_API_KEY=TEST_KEY, STANDIN_BUILD_FAILS="1"
    )
    assert failed.returncode == 1
    lines += printed_gcloud_lines(failed.stderr)
    return baked(client_auth="api-key"), lines


@pytest.mark.gcloud
def test_every_recorded_gcloud_line_passes_the_real_parser(
    real_gcloud: str, recorded_gcloud_lines: tuple[Path, list[list[str]]], tmp_path: Path
) -> None:
    """Each command runs offline or stops at "no active account", never at a parse or
    validation error, so the flags and values deploy.sh uses are ones gcloud accepts."""
    project, lines = recorded_gcloud_lines
    assert any(line[:2] == ["builds", "submit"] for line in lines)
    assert any(line[:2] == ["builds", "get-default-service-account"] for line in lines)
    assert any(line[:3] == ["secrets", "versions", "describe"] for line in lines)
    assert any("OPENAI_MODEL=gpt-4o" in arg for line in lines for arg in line)
    assert any(line[:3] == ["storage", "buckets", "add-iam-policy-binding"] for line in lines)
    for command in (
        ["services", "list"], ["secrets", "get-iam-policy"],
        ["artifacts", "repositories", "set-cleanup-policies"],
        ["run", "services", "update-traffic"], ["run", "services", "delete"],
        ["run", "services", "logs", "read"], ["beta", "run", "services", "logs", "tail"],
        ["run", "revisions", "list"], ["secrets", "remove-iam-policy-binding"],
        ["iam", "service-accounts", "delete"], ["artifacts", "packages", "delete"],
        ["secrets", "delete"], ["auth", "print-identity-token"],
    ):  # fmt: skip
        assert any(line[: len(command)] == command for line in lines), command
    assert any("--no-traffic" in line for line in lines)
    assert any(a.startswith("--impersonate-service-account=") for line in lines for a in line)
    outcomes = replay_all(real_gcloud, lines, project, tmp_path)
    assert any(code == 0 for code, _ in outcomes)  # auth configure-docker / auth list succeed
