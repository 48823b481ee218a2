"""deploy.sh's settings: flags over environment variables over answers, runtime settings (--env,
DEPLOY_ENV), image tags, dry run, help and usage errors.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Bake
from tests.fixtures.deploy import (
    CLIENT_KEYS,
    PROJECT,
    TEST_KEY,
    Deploy,
    Sandboxes,
    flag_value,
)

OVERRIDES = {
    "OPENAI_API_KEY": TEST_KEY,
    "SERVICE_NAME": "env-service",
    "REGION": "europe-west1",
    "MIN_INSTANCES": "1",
    "MAX_INSTANCES": "9",
    "PROJECT_ID": "other-project",
    "SECRET_NAME": "other-secret",
    "SECRET_VERSION": "3",
    "SERVICE_ACCOUNT_ID": "other-runner",
    "ARTIFACT_REGISTRY_REPO": "images",
}


def test_flags_win_over_environment_variables_over_answers(baked: Bake, sandbox: Sandboxes) -> None:
    """Each setting comes from its flag, else its environment variable, else the answers."""
    run = sandbox().run(
        baked(),
        "--service=flag-service",
        "--max-instances",
        "7",
        **OVERRIDES,
    )
    assert run.returncode == 0, run.stderr
    deploy = run.call("gcloud", "run", "deploy")["argv"]
    assert deploy[2] == "flag-service"
    assert flag_value(deploy, "region") == "europe-west1"
    assert flag_value(deploy, "project") == "other-project"
    assert flag_value(deploy, "min-instances") == "1"
    assert flag_value(deploy, "max-instances") == "7"
    assert flag_value(deploy, "set-secrets") == "/secrets/openai/key=other-secret:3"
    assert (
        flag_value(deploy, "service-account")
        == "other-runner@other-project.iam.gserviceaccount.com"
    )
    assert flag_value(deploy, "image").startswith(
        "europe-west1-docker.pkg.dev/other-project/images/flag-service:"
    )


def test_env_flags_add_runtime_settings_to_the_deploy(
    baked: Bake, sandbox: Sandboxes, tmp_path: Path
) -> None:
    """--env KEY=VALUE (repeatable) is appended, in order, to deploy.sh's own --set-env-vars value;
    values with spaces, = and shell characters pass through literally, never evaluated."""
    marker = tmp_path / "pwned"
    run = sandbox().run(
        baked(client_auth="api-key"),
        "--env", "OPENAI_MODEL=gpt-4o",
        "--env=RATE_LIMIT_PER_MINUTE=30",
        "--env", "OPENAI_BASE_URL=https://proxy.example.com/v1?a=b",
        "--env", f"LOG_LEVEL=$(touch {marker}) `id`",
        OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS=CLIENT_KEYS,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert flag_value(run.call("gcloud", "run", "deploy")["argv"], "set-env-vars").split(",") == [
        "GOOGLE_CLOUD_PROJECT=acme-prod-42",
        "OPENAI_API_KEY_FILE=/secrets/openai/key",
        "REQUEST_TIMEOUT_SECONDS=300",
        "CLIENT_API_KEYS_FILE=/secrets/client-api-keys/keys",
        "OPENAI_MODEL=gpt-4o",
        "RATE_LIMIT_PER_MINUTE=30",
        "OPENAI_BASE_URL=https://proxy.example.com/v1?a=b",
        f"LOG_LEVEL=$(touch {marker}) `id`",
    ]
    assert "Runtime settings (--env, DEPLOY_ENV): OPENAI_MODEL RATE_LIMIT_PER_MINUTE" in run.stdout
    assert not marker.exists()


def test_deploy_env_in_the_script_is_set_on_every_deploy(
    baked: Bake, sandbox: Sandboxes, tmp_path: Path
) -> None:
    """DEPLOY_ENV at the top of deploy.sh holds settings for every deploy (CI's too, which passes
    no --env); --env adds to it and is checked the same way."""
    project = tmp_path / "my-service"
    shutil.copytree(baked(), project)
    script = project / "deploy.sh"
    script.write_text(
        script.read_text().replace("\nDEPLOY_ENV=()\n", "\nDEPLOY_ENV=(OPENAI_MAX_TOKENS=512)\n", 1)
    )
    box = sandbox()
    run = box.run(project, "--env", "OPENAI_MODEL=gpt-4o", OPENAI_API_KEY=TEST_KEY)
    assert flag_value(run.call("gcloud", "run", "deploy")["argv"], "set-env-vars") == (
        "GOOGLE_CLOUD_PROJECT=acme-prod-42,OPENAI_API_KEY_FILE=/secrets/openai/key,"
        "REQUEST_TIMEOUT_SECONDS=300,OPENAI_MAX_TOKENS=512,OPENAI_MODEL=gpt-4o"
    )
    twice = box.run(project, "--env", "OPENAI_MAX_TOKENS=100")
    assert twice.returncode == 1
    assert "OPENAI_MAX_TOKENS is given twice" in twice.stderr
    assert twice.calls == []


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        (f"OPENAI_API_KEY={TEST_KEY}", "OPENAI_API_KEY is a secret"),
        ("CLIENT_API_KEYS=client-key-alpha-42", "CLIENT_API_KEYS are secrets"),
        (f"OPENAI_KEY_COPY={TEST_KEY}", "looks like an OpenAI API key"),
    ],
    ids=["openai-key", "client-keys", "key-shaped-value"],
)
def test_env_refuses_secrets_and_points_at_secret_manager(
    baked: Bake, sandbox: Sandboxes, setting: str, says: str
) -> None:
    """Keys never become plain environment variables (visible in the console, in `describe` and
    in CI logs): refused with the secret to use instead, and the value is never echoed."""
    run = sandbox().run(baked(client_auth="api-key"), "--env", setting, OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 1
    assert says in run.stderr
    assert "Secret Manager" in run.stderr
    if setting.startswith("OPENAI_API_KEY="):
        assert "secret openai-api-key, --secret" in run.stderr
    if setting.startswith("CLIENT_API_KEYS="):
        assert "secret my-service-client-api-keys" in run.stderr
    value = setting.split("=", 1)[1]
    assert value not in run.stdout + run.stderr
    assert run.calls == []


GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
TIMESTAMP = r"\d{8}-\d{6}"


def commit_all(repo: Path) -> str:
    """git init (if needed), add and commit everything in repo; return the short sha."""
    if not (repo / ".git").exists():
        subprocess.run([*GIT, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "commit"], cwd=repo, check=True)
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def deployed_tag(run: Deploy) -> str:
    assert run.returncode == 0, run.stderr
    return flag_value(run.call("gcloud", "run", "deploy")["argv"], "image").rsplit(":", 1)[1]


def test_image_tag_is_the_git_commit(bake: Bake, sandbox: Sandboxes) -> None:
    """The repo's own clean checkout: the image is tagged with the short commit sha."""
    project = bake(service_name="tagged-service", gcp_project_id=PROJECT)
    sha = commit_all(project)
    assert deployed_tag(sandbox().run(project, OPENAI_API_KEY=TEST_KEY)) == sha


def test_image_tag_marks_uncommitted_changes(bake: Bake, sandbox: Sandboxes) -> None:
    """Uncommitted changes are in the image but not in the commit: sha-dirty-TIME, so the tag
    never claims a commit that does not hold what was deployed."""
    project = bake(service_name="dirty-service", gcp_project_id=PROJECT)
    sha = commit_all(project)
    (project / "app" / "extra.py").write_text("EXTRA = 1\n")
    tag = deployed_tag(sandbox().run(project, OPENAI_API_KEY=TEST_KEY))
    assert re.fullmatch(rf"{sha}-dirty-{TIMESTAMP}", tag), tag


def test_image_tag_ignores_a_parent_repository(
    baked: Bake, sandbox: Sandboxes, tmp_path: Path
) -> None:
    """A generated repo inside another repository (e.g. build/my-service) is tagged with the time,
    never with the parent's sha, which names code that is not the deployed service."""
    parent = tmp_path / "parent"
    project = parent / "build" / "my-service"
    shutil.copytree(baked(), project)
    parent_sha = commit_all(parent)
    tag = deployed_tag(sandbox().run(project, OPENAI_API_KEY=TEST_KEY))
    assert parent_sha not in tag
    assert re.fullmatch(TIMESTAMP, tag), tag


def test_image_tag_outside_git_is_the_time(baked: Bake, sandbox: Sandboxes, tmp_path: Path) -> None:
    """No repository at all: a UTC timestamp."""
    project = tmp_path / "plain" / "my-service"
    shutil.copytree(baked(), project)
    tag = deployed_tag(
        sandbox().run(project, OPENAI_API_KEY=TEST_KEY, GIT_CEILING_DIRECTORIES=str(tmp_path))
    )
    assert re.fullmatch(TIMESTAMP, tag), tag


def test_dry_run_prints_quoted_commands_and_runs_none(baked: Bake, sandbox: Sandboxes) -> None:
    """--dry-run makes no gcloud call (docker is only asked whether buildx exists) and prints
    every command of a fresh deploy, shell-quoted so it can be pasted back."""
    run = sandbox().run(baked(client_auth="api-key"), "--dry-run", "--region=europe-west1")
    assert run.returncode == 0, run.stderr
    assert run.argvs("gcloud") == []
    assert run.argvs("docker") == [["buildx", "version"]]
    commands = [shlex.split(line[2:]) for line in run.stdout.splitlines() if line.startswith("+ ")]
    deploy = next(argv for argv in commands if argv[:3] == ["gcloud", "run", "deploy"])
    assert flag_value(deploy, "region") == "europe-west1"
    assert flag_value(deploy, "startup-probe").startswith("httpGet.path=/ready,")
    assert ["gcloud", "secrets", "create", "my-service-client-api-keys"] in [
        c[:4] for c in commands
    ]


def test_help_documents_every_option_and_variable(baked: Bake, sandbox: Sandboxes) -> None:
    """--help lists every flag and environment variable, and runs nothing."""
    run = sandbox().run(baked(), "--help")
    assert run.returncode == 0
    for word in (
        "PROJECT_ID", "REGION", "SERVICE_NAME", "SERVICE_ACCOUNT_ID", "SECRET_NAME",
        "SECRET_VERSION", "ARTIFACT_REGISTRY_REPO", "MIN_INSTANCES", "MAX_INSTANCES",
        "CLIENT_KEYS_SECRET_NAME", "OPENAI_API_KEY", "CLIENT_API_KEYS", "--project", "--region",
        "--service", "--service-account", "--secret", "--secret-version", "--repo",
        "--min-instances", "--max-instances", "--client-keys-secret", "--build", "--dry-run",
        "--env KEY=VALUE", "DEPLOY_ENV", "bash 4", "--concurrency", "CONCURRENCY", "--cpu",
        "CPU", "--memory", "MEMORY", "--timeout", "REQUEST_TIMEOUT_SECONDS", "--keep-images",
        "KEEP_IMAGES", "--canary", "CANARY", "--smoke-url", "SMOKE_URL", "--smoke-impersonate",
        "SMOKE_IMPERSONATE_SERVICE_ACCOUNT", "SMOKE_CLIENT_KEY", "--memorystore",
        "MEMORYSTORE_INSTANCE", "--redis-url-secret", "REDIS_URL_SECRET", "--network",
        "VPC_NETWORK", "--subnet", "VPC_SUBNET", "promote", "rollback", "status", "logs", "destroy",
    ):  # fmt: skip
        assert word in run.stdout
    assert run.calls == []


@pytest.mark.parametrize(
    ("subcommand", "words"),
    [
        ("promote", ["--project", "--region", "--service", "--dry-run", "previous"]),
        ("rollback", ["[REVISION]", "--project", "--dry-run", "previous"]),
        ("status", ["--project", "--dry-run", "min/max instances"]),
        ("logs", ["--tail", "--limit", "log-streaming", "--dry-run"]),
        ("destroy", ["--yes", "--delete-secrets", "--service-account", "--repo", "--dry-run"]),
    ],
)
def test_each_subcommand_has_its_own_help(
    baked: Bake, sandbox: Sandboxes, subcommand: str, words: list[str]
) -> None:
    run = sandbox().run(baked(), subcommand, "--help")
    assert run.returncode == 0
    assert run.stdout.startswith(f"Usage: ./deploy.sh {subcommand}")
    for word in words:
        assert word in run.stdout
    assert run.calls == []


def test_cleanup_policy_keeps_the_last_images_and_is_set_only_when_it_changes(
    baked: Bake, sandbox: Sandboxes
) -> None:
    """The repository gets a policy for this service's images: delete, except the newest
    KEEP_IMAGES (default 10); a rerun with the same count sets nothing, a new count sets it."""
    box = sandbox()
    project = baked()
    first = box.run(project, OPENAI_API_KEY=TEST_KEY)
    assert first.returncode == 0, first.stderr
    policy = json.loads(
        first.call("gcloud", "artifacts", "repositories", "set-cleanup-policies")["policy"]
    )
    assert policy == [
        {"name": "my-service-delete-old", "action": {"type": "Delete"},
         "condition": {"tagState": "any", "packageNamePrefixes": ["my-service"]}},
        {"name": "my-service-keep-last", "action": {"type": "Keep"},
         "mostRecentVersions": {"packageNamePrefixes": ["my-service"], "keepCount": 10}},
    ]  # fmt: skip
    rerun = box.run(project)
    assert not rerun.has("gcloud", "artifacts", "repositories", "set-cleanup-policies")
    assert "already keeps the last 10 images" in rerun.stdout
    changed = box.run(project, "--keep-images", "3")
    call = changed.call("gcloud", "artifacts", "repositories", "set-cleanup-policies")
    assert json.loads(call["policy"])[1]["mostRecentVersions"]["keepCount"] == 3
    assert "--no-dry-run" in call["argv"]


def test_unknown_option_is_a_usage_error(baked: Bake, sandbox: Sandboxes) -> None:
    """A mistyped flag stops with status 2 before anything runs."""
    run = sandbox().run(baked(), "--regoin=us-east1")
    assert run.returncode == 2
    assert "unknown option --regoin" in run.stderr
    assert run.calls == []
