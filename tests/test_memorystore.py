"""scripts/memorystore.sh: the deploy side of shared limits (Memorystore or the user's own Redis).

The file is sourced from a baked repo by bash, after scripts/common.sh, exactly as deploy.sh does,
with a recording gcloud stand-in first on PATH (tests/fixtures/memorystore_standin.py) that keeps
state between runs: fresh project, rerun, rotated AUTH string. Every recorded gcloud line is then
replayed through the real gcloud parser.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Bake
from tests.gcloud_parser import NO_ACCOUNT

STANDIN = Path(__file__).parent / "fixtures" / "memorystore_standin.py"
VENV_BIN = Path(sys.executable).parent
RUNTIME = "my-runtime@my-proj.iam.gserviceaccount.com"
MEMBER = f"serviceAccount:{RUNTIME}"
# The stand-in's instance: AUTH string (with characters a URL must escape), host, port, CA.
AUTH = "0c7a-AUTH/string+1"
URL = "rediss://:0c7a-AUTH%2Fstring%2B1@10.0.0.3:6378"
CA = "-----BEGIN CERTIFICATE-----\nMIIBfakeCA\n-----END CERTIFICATE-----\n"
CA_PATH = "/secrets/redis-ca/ca.pem"
VPC_FLAGS = ["--network=default", "--subnet=default", "--vpc-egress=private-ranges-only"]

# deploy.sh's side of the contract, in a few lines: settings, the three arrays, the two calls.
DRIVER = """
set -euo pipefail
source scripts/common.sh
source scripts/memorystore.sh
DRY_RUN=${DRY:-no}
PROJECT_ID=my-proj REGION=us-central1 SERVICE_NAME=my-service RUNTIME_SA_EMAIL=@RUNTIME@
SECRET_MAPPINGS=() DEPLOY_ENV=() DEPLOY_FLAGS=()
STEPS=$REDIS_STEPS
redis_preflight
redis_ensure
for name in SECRET_MAPPINGS DEPLOY_ENV DEPLOY_FLAGS; do
  declare -n values=$name
  for value in ${values[@]+"${values[@]}"}; do echo "$name $value"; done
done
""".replace("@RUNTIME@", RUNTIME)


@dataclass
class Run:
    result: subprocess.CompletedProcess[str]
    calls: list[dict[str, object]]
    outputs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def argvs(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls]  # type: ignore[misc]

    def verbs(self, *verbs: str) -> list[list[str]]:
        return [argv for argv in self.argvs if set(verbs) & set(argv)]


Runner = Callable[..., Run]


@pytest.fixture(scope="module")
def project(bake_once: Bake) -> Path:
    return bake_once(client_auth="api-key")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def run_redis(project: Path, tmp_path: Path, state: Path) -> Runner:
    """Source memorystore.sh like deploy.sh and run preflight + ensure; state persists per test."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "gcloud"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {STANDIN} "$@"\n')
    wrapper.chmod(0o755)
    driver = tmp_path / "driver.sh"
    driver.write_text(DRIVER)
    log = tmp_path / "gcloud.log"

    def run(dry: bool = False, **env: str) -> Run:
        log.write_text("")
        result = subprocess.run(
            ["bash", driver],
            cwd=project,
            env={
                **os.environ,
                "PATH": f"{bin_dir}:{os.environ['PATH']}",
                "STANDIN_LOG": str(log),
                "STANDIN_STATE": str(state),
                "IAM_RETRY_DELAY": "0",
                "DRY": "yes" if dry else "no",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        outputs: dict[str, list[str]] = {}
        for line in result.stdout.splitlines():
            name, _, value = line.partition(" ")
            if name in {"SECRET_MAPPINGS", "DEPLOY_ENV", "DEPLOY_FLAGS"}:
                outputs.setdefault(name, []).append(value)
        return Run(result, calls, outputs)

    return run


def secret_versions(state: Path, name: str) -> list[str]:
    folder = state / "secrets" / name
    return [path.read_text() for path in sorted(folder.glob("v*"), key=lambda p: p.name)]


def secret_bindings(state: Path, name: str) -> set[str]:
    return {path.read_text() for path in (state / "secrets" / name).glob("binding*")}


MEMORYSTORE = {"MEMORYSTORE_INSTANCE": "my-redis"}
OWN_REDIS = {"REDIS_URL_SECRET": "team-redis"}


def test_a_fresh_project_gets_an_instance_two_secrets_and_the_deploy_settings(
    run_redis: Runner, state: Path
) -> None:
    """Memorystore basic 1 GB with AUTH and TLS on the network; the rediss URL (AUTH escaped)
    and the CA stored as secrets, each bound to the runtime account on the secret; the deploy
    gets REDIS_URL from the secret, the CA as a mounted file and Direct VPC egress."""
    run = run_redis(**MEMORYSTORE)
    assert run.result.returncode == 0, run.result.stderr
    (create,) = run.verbs("create")[:1]
    assert create[:4] == ["redis", "instances", "create", "my-redis"]
    for expected in ("--tier=basic", "--size=1", "--network=default", "--enable-auth",
                     "--transit-encryption-mode=server-authentication", "--region=us-central1",
                     "--project=my-proj"):  # fmt: skip
        assert expected in create
    assert secret_versions(state, "my-service-redis-url") == [URL]
    assert secret_versions(state, "my-service-redis-ca") == [CA]
    for name in ("my-service-redis-url", "my-service-redis-ca"):
        assert secret_bindings(state, name) == {f"roles/secretmanager.secretAccessor {MEMBER}"}
    assert not [argv for argv in run.argvs if argv[:2] == ["projects", "add-iam-policy-binding"]]
    assert run.outputs == {
        "SECRET_MAPPINGS": ["REDIS_URL=my-service-redis-url:latest",
                            f"{CA_PATH}=my-service-redis-ca:latest"],
        "DEPLOY_ENV": [f"REDIS_CA_FILE={CA_PATH}"],
        "DEPLOY_FLAGS": VPC_FLAGS,
    }  # fmt: skip


def test_secret_values_reach_gcloud_on_stdin_only(run_redis: Runner) -> None:
    """The AUTH string is in no argv and in no line printed; both secrets went in on stdin."""
    run = run_redis(**MEMORYSTORE)
    assert run.result.returncode == 0, run.result.stderr
    for secret in ("AUTH-string", "%2Fstring", "MIIBfakeCA"):
        assert secret not in json.dumps(run.argvs)
        assert secret not in run.result.stdout + run.result.stderr
    stored = [call for call in run.calls if "stdin" in call]
    assert len(stored) == 2
    assert all("--data-file=-" in call["argv"] for call in stored)  # type: ignore[operator]


def test_a_rerun_creates_nothing_and_changes_no_policy(run_redis: Runner, state: Path) -> None:
    """Second deploy: every lookup finds its resource, so nothing is created, no version is
    added and no binding is written; the deploy settings are the same."""
    first = run_redis(**MEMORYSTORE)
    assert first.result.returncode == 0, first.result.stderr
    again = run_redis(**MEMORYSTORE)
    assert again.result.returncode == 0, again.result.stderr
    assert again.verbs("create", "add", "add-iam-policy-binding", "enable") == []
    assert again.outputs == first.outputs
    assert "up to date" in again.result.stdout
    assert secret_versions(state, "my-service-redis-url") == [URL]


def test_a_changed_auth_string_adds_one_version_to_the_url_secret_only(
    run_redis: Runner, state: Path
) -> None:
    """The current value is compared in the shell, so only a real change makes a version."""
    assert run_redis(**MEMORYSTORE).result.returncode == 0
    rotated = run_redis(**MEMORYSTORE, STANDIN_AUTH="new-auth")
    assert rotated.result.returncode == 0, rotated.result.stderr
    added = rotated.verbs("add")
    assert [argv[:4] for argv in added] == [["secrets", "versions", "add", "my-service-redis-url"]]
    assert secret_versions(state, "my-service-redis-url") == [
        URL, "rediss://:new-auth@10.0.0.3:6378"
    ]  # fmt: skip
    assert len(secret_versions(state, "my-service-redis-ca")) == 1


def test_dry_run_prints_every_command_and_runs_none(run_redis: Runner) -> None:
    """--dry-run: no gcloud call at all; the printed commands are a fresh project's, secrets
    created from stdin without showing it, and the deploy settings are the real run's."""
    run = run_redis(dry=True, **MEMORYSTORE)
    assert run.result.returncode == 0, run.result.stderr
    assert run.calls == []
    printed = [shlex.split(line[2:]) for line in run.result.stdout.splitlines() if line[:2] == "+ "]
    commands = [" ".join(argv[1:]) for argv in printed]
    for expected in ("redis instances describe my-redis", "redis instances create my-redis",
                     "redis instances get-auth-string my-redis",
                     "compute networks subnets describe", "secrets create my-service-redis-url",
                     "secrets create my-service-redis-ca",
                     "secrets add-iam-policy-binding my-service-redis-url"):  # fmt: skip
        assert any(command.startswith(expected) for command in commands), expected
    assert run.result.stdout.count("(stdin: the secret value, not shown)") == 2
    assert run.outputs["DEPLOY_FLAGS"] == VPC_FLAGS


def test_the_users_own_redis_needs_only_its_secret(run_redis: Runner, state: Path) -> None:
    """--redis-url-secret alone: no Memorystore and no VPC flags; the existing secret is bound
    to the runtime account and mapped to REDIS_URL."""
    (state / "secrets" / "team-redis").mkdir(parents=True)
    (state / "secrets" / "team-redis" / "v1").write_text("rediss://:pw@redis.example.com:6380")
    run = run_redis(**OWN_REDIS)
    assert run.result.returncode == 0, run.result.stderr
    assert not [argv for argv in run.argvs if argv[0] in {"redis", "compute"}]
    assert run.verbs("create", "add") == []
    assert secret_bindings(state, "team-redis") == {f"roles/secretmanager.secretAccessor {MEMBER}"}
    assert run.outputs == {"SECRET_MAPPINGS": ["REDIS_URL=team-redis:latest"]}


def test_a_missing_own_redis_secret_stops_the_preflight_with_how_to_create_it(
    run_redis: Runner,
) -> None:
    """Nothing is created or bound; the message shows the stdin way to store the URL."""
    run = run_redis(**OWN_REDIS)
    assert run.result.returncode != 0
    assert "secret team-redis (--redis-url-secret) does not exist" in run.result.stderr
    assert "--data-file=-" in run.result.stderr
    assert run.verbs("create", "add", "add-iam-policy-binding") == []


def test_a_refused_lookup_stops_before_anything_is_created(run_redis: Runner) -> None:
    """PERMISSION_DENIED is not "missing": the script stops with gcloud's message and a hint,
    and never tries to create the instance."""
    run = run_redis(**MEMORYSTORE, STANDIN_DENY="1")
    assert run.result.returncode != 0
    assert "was refused" in run.result.stderr
    assert "PERMISSION_DENIED" in run.result.stderr
    assert run.verbs("create", "add-iam-policy-binding") == []


def test_a_disabled_redis_api_is_enabled_before_the_instance_is_created(
    run_redis: Runner,
) -> None:
    """SERVICE_DISABLED (which gcloud reports as PERMISSION_DENIED) means "enable the API"."""
    run = run_redis(**MEMORYSTORE, STANDIN_REDIS_API_OFF="1")
    assert run.result.returncode == 0, run.result.stderr
    enable = next(i for i, argv in enumerate(run.argvs) if argv[:2] == ["services", "enable"])
    create = next(i for i, argv in enumerate(run.argvs) if "create" in argv)
    assert "redis.googleapis.com" in run.argvs[enable]
    assert enable < create


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STANDIN_SUBNET": "missing"}, "subnet default (--subnet) does not exist"),
        ({"STANDIN_SUBNET": "10.8.0.0/28"}, "smaller than Direct VPC egress needs"),
    ],
    ids=["no-subnet", "subnet-too-small"],
)
def test_an_unusable_subnet_stops_the_preflight(
    run_redis: Runner, env: dict[str, str], message: str
) -> None:
    """Direct VPC egress needs a subnet of /26 or more in the region: checked before any create."""
    run = run_redis(**MEMORYSTORE, **env)
    assert run.result.returncode != 0
    assert message in run.result.stderr
    assert run.verbs("create") == []


def test_an_existing_instance_without_auth_is_refused(run_redis: Runner, state: Path) -> None:
    """An instance anyone on the network could use is not wired into the service."""
    (state / "redis").mkdir()
    (state / "redis" / "my-redis").write_text("plain")
    run = run_redis(**MEMORYSTORE)
    assert run.result.returncode != 0
    assert "has AUTH off" in run.result.stderr
    assert "--enable-auth" in run.result.stderr
    assert run.verbs("create", "add-iam-policy-binding") == []


@pytest.mark.parametrize(
    "env",
    [
        {"MEMORYSTORE_INSTANCE": "My_Redis"},
        {"MEMORYSTORE_INSTANCE": "r" * 41},
        {"MEMORYSTORE_INSTANCE": "my-redis", "VPC_SUBNET": "bad subnet"},
        {"MEMORYSTORE_INSTANCE": "my-redis", "REDIS_URL_SECRET": "bad/secret"},
    ],
    ids=["uppercase", "too-long", "subnet", "secret-name"],
)
def test_bad_names_are_refused_before_any_gcloud_call(
    run_redis: Runner, env: dict[str, str]
) -> None:
    run = run_redis(**env)
    assert run.result.returncode != 0
    assert "nothing was changed" in run.result.stderr
    assert run.calls == []


def test_bindings_are_retried_while_iam_catches_up_with_a_new_account(run_redis: Runner) -> None:
    """A runtime account created seconds earlier is refused at first; the binding is retried."""
    run = run_redis(**MEMORYSTORE, STANDIN_NEW_ACCOUNT_LAG="2")
    assert run.result.returncode == 0, run.result.stderr
    assert run.result.stdout.count("retrying") == 2
    assert len(run.verbs("add-iam-policy-binding")) == 4


@pytest.mark.gcloud
def test_every_recorded_gcloud_line_passes_the_real_parser(
    run_redis: Runner, state: Path, real_gcloud: str, tmp_path: Path
) -> None:
    """Fresh, rerun, rotated AUTH, API off and own-Redis runs: each distinct gcloud line they
    ran is well formed for the real CLI (it stops only at "no active account")."""
    lines: set[tuple[str, ...]] = set()
    for env in (MEMORYSTORE, MEMORYSTORE, {**MEMORYSTORE, "STANDIN_AUTH": "rotated"}):
        run = run_redis(**env)
        assert run.result.returncode == 0, run.result.stderr
        lines |= {tuple(argv) for argv in run.argvs}
    run = run_redis(MEMORYSTORE_INSTANCE="other-redis", STANDIN_REDIS_API_OFF="1")
    lines |= {tuple(argv) for argv in run.argvs}
    run = run_redis(**{**OWN_REDIS, "REDIS_URL_SECRET": "my-service-redis-url"})
    assert run.result.returncode == 0, run.result.stderr
    lines |= {tuple(argv) for argv in run.argvs}
    assert len(lines) >= 15
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"),
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}  # fmt: skip
    for argv in sorted(lines):
        result = subprocess.run(
            [real_gcloud, *argv], env=env, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=60, check=False,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 1, f"{shlex.join(argv)}\n{output}"
        assert NO_ACCOUNT in output, f"{shlex.join(argv)}\n{output}"


def test_the_redis_scripts_pass_shellcheck(project: Path) -> None:
    """shellcheck, following the sourced files, reports nothing."""
    result = subprocess.run(
        [VENV_BIN / "shellcheck", "-x", "scripts/memorystore.sh", "scripts/gcloud_checks.sh"],
        cwd=project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
