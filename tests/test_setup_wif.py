"""scripts/setup-github-wif.sh: Workload Identity Federation and a least-privilege deployer.

The script runs from a baked repo against a recording gcloud stand-in (one JSON argv per line);
every line it runs is replayed through the real gcloud parser. What the deployer is granted is
checked as a whole table, so a new role anywhere shows up as a failure here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Bake
from tests.gcloud_parser import Parses, gcloud_parses  # noqa: F401 (a fixture)
from tests.test_cicd import answers_of

VENV_BIN = Path(sys.executable).parent
REPO = "acme/my-service"
REPO_ID, OWNER_ID = "812345678", "98765432"
IDS = {"GITHUB_REPOSITORY_ID": REPO_ID, "GITHUB_REPOSITORY_OWNER_ID": OWNER_ID}
PROJECT_NUMBER = "123456789012"
CONDITION = (
    f"assertion.repository == '{REPO}' && assertion.repository_id == '{REPO_ID}' && "
    f"assertion.repository_owner_id == '{OWNER_ID}' && assertion.ref == 'refs/heads/main'"
)
# A recording gcloud: logs argv as one JSON line. `describe` of a name listed in STANDIN_MISSING
# fails with NOT_FOUND like the real CLI (a Cloud Run service: "Cannot find service"), every
# describe fails with PERMISSION_DENIED under STANDIN_DENY, the provider's condition is
# STANDIN_CONDITION, the first STANDIN_NEW_ACCOUNT_LAG bindings fail as IAM does for an account
# created seconds ago; every other call succeeds.
GCLOUD_STANDIN = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["STANDIN_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(args) + "\\n")
words = [arg for arg in args if not arg.startswith("-")]
if words[:2] == ["auth", "list"]:
    print("admin@example.com")
elif words[:2] == ["projects", "describe"]:
    print("{PROJECT_NUMBER}")
elif "describe" in words and os.environ.get("STANDIN_DENY"):
    sys.exit("ERROR: (gcloud) PERMISSION_DENIED: Permission denied on resource.")
elif "describe" in words and words[-1] in os.environ.get("STANDIN_MISSING", "").split():
    if words[0] == "run":
        sys.exit(f"ERROR: (gcloud.run.services.describe) Cannot find service [{{words[-1]}}]")
    sys.exit(f"ERROR: (gcloud) NOT_FOUND: {{words[-1]}} was not found.")
elif words[:4] == ["iam", "workload-identity-pools", "providers", "describe"]:
    print(os.environ.get("STANDIN_CONDITION", ""))
elif "add-iam-policy-binding" in words:
    lag = Path(os.environ["STANDIN_LOG"] + ".lag")
    refused = int(lag.read_text()) if lag.exists() else 0
    if refused < int(os.environ.get("STANDIN_NEW_ACCOUNT_LAG", "0")):
        lag.write_text(str(refused + 1))
        sys.exit("ERROR: (gcloud) INVALID_ARGUMENT: Service account deployer does not exist.")
"""
# A GitHub CLI that knows one repository's ids.
GH_STANDIN = f"""#!/bin/sh
[ "$1 $2" = "api repos/{REPO}" ] && echo "{REPO_ID} {OWNER_ID}" && exit 0
echo "gh: Not Found (HTTP 404)" >&2; exit 1
"""
GH_SIGNED_OUT = """#!/bin/sh
echo "To get started with GitHub CLI, please run:  gh auth login" >&2; exit 4
"""

Calls = list[list[str]]
SetupRunner = Callable[..., tuple[subprocess.CompletedProcess[str], Calls]]


@pytest.fixture(scope="module")
def github_project(bake_once: Bake) -> Path:
    return bake_once(ci_provider="github-actions")


@pytest.fixture
def run_setup(tmp_path: Path) -> SetupRunner:
    """Run the setup script with the recording gcloud first on PATH; return result and calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(GCLOUD_STANDIN)
    (bin_dir / "gcloud").chmod(0o755)
    log = tmp_path / "gcloud.log"

    def run(
        project: Path, *args: str, missing: tuple[str, ...] = (), gh: bool = False, **env: str
    ) -> tuple[subprocess.CompletedProcess[str], Calls]:
        log.write_text("")
        Path(f"{log}.lag").unlink(missing_ok=True)
        # A GitHub CLI that knows the repository, or one that cannot help (not signed in),
        # so a gh installed on this machine never answers.
        (bin_dir / "gh").write_text(GH_STANDIN if gh else GH_SIGNED_OUT)
        (bin_dir / "gh").chmod(0o755)
        result = subprocess.run(
            ["bash", "scripts/setup-github-wif.sh", *args],
            cwd=project,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")},
                "PATH": f"{bin_dir}:{os.environ['PATH']}",
                "STANDIN_LOG": str(log),
                "STANDIN_MISSING": " ".join(missing),
                "IAM_RETRY_DELAY": "0",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return result, calls

    return run


def creates(calls: Calls) -> Calls:
    return [argv for argv in calls if {"create", "create-oidc"} & set(argv)]


def flag(argv: list[str], name: str) -> str:
    return next(arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}="))


def wif_names(project: Path) -> dict[str, str]:
    answers = answers_of(project)
    service, project_id = answers["service_name"], answers["gcp_project_id"]
    return {
        "pool": "github",
        "provider": f"gh-{service[:29].rstrip('-')}",
        "deployer": f"{service[:23].rstrip('-')}-deploy@{project_id}.iam.gserviceaccount.com",
    }


def grants(calls: Calls) -> set[tuple[str, str, str, str]]:
    """(resource kind, resource, member, role) of every binding the script added."""
    found = set()
    for argv in calls:
        if "add-iam-policy-binding" in argv:
            kind = " ".join(argv[: argv.index("add-iam-policy-binding")])
            resource = argv[argv.index("add-iam-policy-binding") + 1]
            found.add((kind, resource, flag(argv, "member"), flag(argv, "role")))
    return found


def test_setup_wif_creates_pool_provider_and_deployer_in_a_fresh_project(
    github_project: Path, run_setup: SetupRunner
) -> None:
    """Nothing of WIF exists: pool, provider (this repo, by name and ids, on main) and deployer
    are created."""
    names = wif_names(github_project)
    result, calls = run_setup(
        github_project, "--github-repo", REPO, missing=tuple(names.values()), **IDS
    )
    assert result.returncode == 0, result.stderr
    created = [argv[:4] for argv in creates(calls)]
    assert created == [
        ["iam", "workload-identity-pools", "create", "github"],
        ["iam", "workload-identity-pools", "providers", "create-oidc"],
        ["iam", "service-accounts", "create", names["deployer"].split("@")[0]],
    ]
    provider = creates(calls)[1]
    assert flag(provider, "attribute-condition") == CONDITION
    mapping = dict(pair.split("=") for pair in flag(provider, "attribute-mapping").split(","))
    assert mapping["attribute.repository_id"] == "assertion.repository_id"
    assert mapping["attribute.repository_owner_id"] == "assertion.repository_owner_id"
    assert "--issuer-uri=https://token.actions.githubusercontent.com" in provider
    principal = (
        f"principalSet://iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/"
        f"workloadIdentityPools/github/attribute.repository/{REPO}"
    )
    assert any(f"--member={principal}" in argv for argv in calls)


@pytest.mark.parametrize("client_auth", ["iam", "api-key", "none"])
def test_the_deployer_gets_the_smallest_set_of_roles_that_deploys(
    bake_once: Bake, run_setup: SetupRunner, client_auth: str
) -> None:
    """No project-wide run.admin, serviceUsageAdmin or secretmanager.admin: project roles are
    run.developer and serviceUsageViewer; the rest sits on the one resource it is for. The
    runtime account reads its secrets; iam mode adds what the smoke test's identity token needs."""
    project = bake_once(ci_provider="github-actions", client_auth=client_auth)
    answers = answers_of(project)
    project_id = answers["gcp_project_id"]
    deployer = f"serviceAccount:{wif_names(project)['deployer']}"
    runtime_email = f"{answers['service_account_id']}@{project_id}.iam.gserviceaccount.com"
    runtime = f"serviceAccount:{runtime_email}"
    result, calls = run_setup(project, "--github-repo", REPO, **IDS)
    assert result.returncode == 0, result.stderr
    secrets = [answers["secret_name"]]
    if client_auth == "api-key":
        secrets.append(f"{answers['service_name']}-client-api-keys")
    expected = {
        ("projects", project_id, deployer, "roles/run.developer"),
        ("projects", project_id, deployer, "roles/serviceusage.serviceUsageViewer"),
        ("artifacts repositories", answers["artifact_registry_repo"], deployer,
         "roles/artifactregistry.writer"),
        ("iam service-accounts", runtime_email, deployer, "roles/iam.serviceAccountUser"),
        *{("secrets", name, deployer, "roles/secretmanager.viewer") for name in secrets},
        *{("secrets", name, runtime, "roles/secretmanager.secretAccessor") for name in secrets},
    }  # fmt: skip
    if client_auth == "iam":
        expected |= {
            ("iam service-accounts", deployer.split(":")[1], deployer,
             "roles/iam.serviceAccountOpenIdTokenCreator"),
            ("run services", answers["service_name"], deployer, "roles/run.invoker"),
        }  # fmt: skip
    granted = {grant for grant in grants(calls) if grant[3] != "roles/iam.workloadIdentityUser"}
    assert granted == expected
    for role in ("roles/run.admin", "roles/serviceusage.serviceUsageAdmin",
                 "roles/secretmanager.admin", "roles/owner", "roles/editor"):  # fmt: skip
        assert not any(role == grant[3] for grant in grants(calls))


def test_with_memorystore_the_deployer_may_read_and_rotate_the_redis_secrets_only(
    github_project: Path, run_setup: SetupRunner
) -> None:
    """--memorystore: CI's deploy reads the instance, the subnet and the AUTH string (a custom
    role with that one permission, not redis.admin), compares and updates the two Redis secrets;
    the instance must exist already; the repository variable for deploy.yml is printed."""
    project_id = answers_of(github_project)["gcp_project_id"]
    deployer = f"serviceAccount:{wif_names(github_project)['deployer']}"
    args = ("--github-repo", REPO, "--memorystore", "my-redis")
    result, calls = run_setup(github_project, *args, missing=("redisAuthStringReader",), **IDS)
    assert result.returncode == 0, result.stderr
    (role,) = [argv for argv in calls if argv[:3] == ["iam", "roles", "create"]]
    assert flag(role, "permissions") == "redis.instances.getAuthString"
    added = grants(calls) - grants(run_setup(github_project, "--github-repo", REPO, **IDS)[1])
    custom = f"projects/{project_id}/roles/redisAuthStringReader"
    assert {(kind, role) for kind, _, member, role in added if member == deployer} == {
        ("projects", "roles/redis.viewer"), ("projects", "roles/compute.networkViewer"),
        ("projects", custom), ("secrets", "roles/secretmanager.viewer"),
        ("secrets", "roles/secretmanager.secretAccessor"),
        ("secrets", "roles/secretmanager.secretVersionAdder"),
    }  # fmt: skip
    assert {resource for kind, resource, _, _ in added if kind == "secrets"} == {
        "my-service-redis-url", "my-service-redis-ca"
    }  # fmt: skip
    assert "gh variable set MEMORYSTORE_INSTANCE --repo acme/my-service --body my-redis" in (
        result.stdout
    )
    deploy = (github_project / ".github/workflows/deploy.yml").read_text()
    assert "MEMORYSTORE_INSTANCE: ${{ vars.MEMORYSTORE_INSTANCE }}" in deploy
    missing, calls = run_setup(github_project, *args, missing=("my-redis",), **IDS)
    assert missing.returncode != 0
    assert "Memorystore instance my-redis" in missing.stderr
    assert not [argv for argv in calls if "add-iam-policy-binding" in argv]


def test_setup_wif_prints_the_repository_variables_deploy_yml_reads(
    github_project: Path, run_setup: SetupRunner
) -> None:
    """The variables printed are exactly the ones the deploy workflow uses, with their values."""
    names = wif_names(github_project)
    result, _ = run_setup(github_project, "--github-repo", REPO, **IDS)
    assert result.returncode == 0, result.stderr
    provider = (
        f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/github/"
        f"providers/{names['provider']}"
    )
    printed = dict(re.findall(r"gh variable set (\S+) --repo \S+ --body (\S+)", result.stdout))
    assert printed == {
        "GCP_WORKLOAD_IDENTITY_PROVIDER": provider,
        "GCP_DEPLOYER_SERVICE_ACCOUNT": names["deployer"],
    }
    deploy = (github_project / ".github/workflows/deploy.yml").read_text()
    assert set(re.findall(r"vars\.(GCP_\w+)", deploy)) == set(printed)


def test_setup_wif_rerun_creates_and_updates_nothing(
    github_project: Path, run_setup: SetupRunner
) -> None:
    """When describe finds everything with the right condition, a rerun creates nothing."""
    result, calls = run_setup(
        github_project, "--github-repo", REPO, STANDIN_CONDITION=CONDITION, **IDS
    )
    assert result.returncode == 0, result.stderr
    assert any("describe" in argv for argv in calls)
    assert creates(calls) == []
    assert not [argv for argv in calls if "update-oidc" in argv]


def test_a_provider_with_an_older_condition_is_updated_to_pin_the_ids(
    github_project: Path, run_setup: SetupRunner
) -> None:
    """A provider made before the ids were pinned gets the new condition and mapping in place."""
    old = f"assertion.repository == '{REPO}' && assertion.ref == 'refs/heads/main'"
    result, calls = run_setup(github_project, "--github-repo", REPO, STANDIN_CONDITION=old, **IDS)
    assert result.returncode == 0, result.stderr
    (update,) = [argv for argv in calls if "update-oidc" in argv]
    assert flag(update, "attribute-condition") == CONDITION
    assert "attribute.repository_id=assertion.repository_id" in flag(update, "attribute-mapping")
    assert creates(calls) == []


@pytest.mark.parametrize("what", ["runtime", "service"])
def test_setup_wif_stops_before_changing_anything_when_deploy_sh_never_ran(
    github_project: Path, run_setup: SetupRunner, what: str
) -> None:
    """The deployer's roles are on deploy.sh's resources (the service included), so they must
    exist first; a missing Cloud Run service says "Cannot find", not NOT_FOUND."""
    answers = answers_of(github_project)
    name = {
        "runtime": f"{answers['service_account_id']}@{answers['gcp_project_id']}"
        ".iam.gserviceaccount.com",
        "service": answers["service_name"],
    }[what]
    result, calls = run_setup(github_project, "--github-repo", REPO, missing=(name,), **IDS)
    assert result.returncode != 0
    assert "Run ./deploy.sh once" in result.stderr
    assert name in result.stderr
    assert creates(calls) == []
    assert not [argv for argv in calls if "add-iam-policy-binding" in argv or "enable" in argv]


def test_a_refused_describe_stops_with_the_fix_instead_of_creating(
    github_project: Path, run_setup: SetupRunner
) -> None:
    """PERMISSION_DENIED is not "missing": stop with gcloud's message, create nothing."""
    result, calls = run_setup(github_project, "--github-repo", REPO, STANDIN_DENY="1", **IDS)
    assert result.returncode != 0
    assert "was refused" in result.stderr
    assert "PERMISSION_DENIED" in result.stderr
    assert "Run ./deploy.sh once" not in result.stderr
    assert creates(calls) == []
    assert not [argv for argv in calls if "add-iam-policy-binding" in argv]


def test_bindings_are_retried_while_iam_catches_up_with_the_new_deployer(
    github_project: Path, run_setup: SetupRunner
) -> None:
    """A deployer created seconds ago is refused in its first bindings: they are retried."""
    names = wif_names(github_project)
    result, calls = run_setup(
        github_project, "--github-repo", REPO, missing=(names["deployer"],),
        STANDIN_NEW_ACCOUNT_LAG="2", **IDS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("retrying") == 2
    first = next(argv for argv in calls if "add-iam-policy-binding" in argv)
    assert sum(argv == first for argv in calls) == 3


def git_project(github_project: Path, tmp_path: Path, remote: str | None) -> Path:
    project = tmp_path / "service"
    shutil.copytree(github_project, project)
    subprocess.run(["git", "init", "-q", project], check=True)
    if remote:
        subprocess.run(["git", "-C", project, "remote", "add", "origin", remote], check=True)
    return project


def test_setup_wif_reads_the_repository_from_the_github_remote(
    github_project: Path, run_setup: SetupRunner, tmp_path: Path
) -> None:
    """Without --github-repo, the origin remote (ssh or https form) names the repository."""
    project = git_project(github_project, tmp_path, "git@github.com:acme/from-remote.git")
    result, _ = run_setup(project, **IDS)
    assert result.returncode == 0, result.stderr
    assert "--repo acme/from-remote " in result.stdout


@pytest.mark.parametrize(
    ("remote", "message"),
    [(None, 'no git remote "origin"'), ("https://gitlab.com/acme/x.git", "not a github.com")],
    ids=["no-origin", "not-github"],
)
def test_without_a_github_origin_the_script_names_the_flag_to_pass(
    github_project: Path, run_setup: SetupRunner, tmp_path: Path, remote: str | None, message: str
) -> None:
    project = git_project(github_project, tmp_path, remote)
    result, calls = run_setup(project, **IDS)
    assert result.returncode != 0
    assert message in result.stderr
    assert "--github-repo OWNER/REPO" in result.stderr
    assert calls == []


@pytest.mark.parametrize(
    ("args", "gh", "env"),
    [
        (("--github-repo-id", REPO_ID, "--github-owner-id", OWNER_ID), False, {}),
        ((), False, IDS),
        ((), True, {}),
    ],
    ids=["flags", "github-variables", "gh-api"],
)
def test_the_numeric_ids_come_from_flags_variables_or_gh(
    github_project: Path, run_setup: SetupRunner, args: tuple[str, ...], gh: bool,
    env: dict[str, str],
) -> None:  # fmt: skip
    names = wif_names(github_project)
    result, calls = run_setup(
        github_project, "--github-repo", REPO, *args, gh=gh, missing=(names["provider"],), **env
    )
    assert result.returncode == 0, result.stderr
    (provider,) = [argv for argv in calls if "create-oidc" in argv]
    assert flag(provider, "attribute-condition") == CONDITION


def test_without_the_ids_the_script_stops_and_says_how_to_get_them(
    github_project: Path, run_setup: SetupRunner
) -> None:
    result, calls = run_setup(github_project, "--github-repo", REPO)
    assert result.returncode != 0
    for hint in ("--github-repo-id", "--github-owner-id", "GITHUB_REPOSITORY_ID",
                 f"gh api repos/{REPO} --jq '.id, .owner.id'", "nothing was run"):  # fmt: skip
        assert hint in result.stderr
    assert calls == []


@pytest.mark.parametrize(
    "args",
    [
        ("--github-repo", "acme/x' || true || '"),
        ("--github-repo", REPO, "--branch", "main' || true"),
        ("--github-repo", REPO, "--github-repo-id", "1' || true || '"),
        ("--github-repo", REPO, "--pool", "gcp-reserved"),
        ("--github-repo", REPO, "--deployer", "Bad_Name"),
        ("--github-repo", REPO, "--project", "my-google-project"),
    ],
    ids=["repo-injection", "branch-injection", "id-injection", "reserved-pool", "bad-deployer",
         "bad-project"],
)  # fmt: skip
def test_setup_wif_rejects_bad_values_before_running_anything(
    github_project: Path, run_setup: SetupRunner, args: tuple[str, ...]
) -> None:
    """A value that could widen the provider's condition or break later is refused up front."""
    result, calls = run_setup(github_project, *args, **IDS)
    assert result.returncode != 0
    assert "nothing was run" in result.stderr
    assert calls == []


def test_setup_wif_dry_run_prints_commands_and_runs_none(
    github_project: Path, run_setup: SetupRunner
) -> None:
    """--dry-run shows every command, shell-quoted, and calls gcloud not once."""
    result, calls = run_setup(github_project, "--github-repo", REPO, "--dry-run", **IDS)
    assert result.returncode == 0, result.stderr
    assert calls == []
    printed = [shlex.split(line[2:]) for line in result.stdout.splitlines() if line[:2] == "+ "]
    assert ["gcloud", "iam", "workload-identity-pools", "create", "github"] in [
        argv[:5] for argv in printed
    ]
    project_roles = {flag(argv, "role") for argv in printed
                     if argv[1] == "projects" and "add-iam-policy-binding" in argv}  # fmt: skip
    assert project_roles == {"roles/run.developer", "roles/serviceusage.serviceUsageViewer"}


def test_setup_wif_passes_shellcheck(github_project: Path) -> None:
    """shellcheck (following the sourced files) reports nothing."""
    result = subprocess.run(
        [VENV_BIN / "shellcheck", "-x", "scripts/setup-github-wif.sh"],
        cwd=github_project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


@pytest.mark.gcloud
@pytest.mark.parametrize("client_auth", ["iam", "api-key"])
def test_every_gcloud_line_of_setup_wif_passes_the_real_parser(
    bake_once: Bake,
    run_setup: SetupRunner,
    gcloud_parses: Parses,  # noqa: F811 (the fixture imported above)
    client_auth: str,
) -> None:
    """Each distinct command a fresh setup and an update of the provider run parses for real."""
    project = bake_once(ci_provider="github-actions", client_auth=client_auth)
    result, calls = run_setup(
        project, "--github-repo", REPO, missing=tuple(wif_names(project).values()), **IDS
    )
    assert result.returncode == 0, result.stderr
    updated, more = run_setup(
        project, "--github-repo", REPO, "--memorystore", "my-redis",
        missing=("redisAuthStringReader",), STANDIN_CONDITION="old", **IDS,
    )  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    distinct = {tuple(argv) for argv in calls + more}
    assert len(distinct) >= 18
    for argv in sorted(distinct):
        gcloud_parses(list(argv), project)
