"""deploy.sh: run against recording stand-ins for gcloud and docker, every recorded gcloud line
replayed through the real gcloud parser, overrides validated like the pre-gen hook, shellcheck.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hooks import pre_gen_project as hook
from tests.conftest import TEMPLATE_ROOT, Bake, require
from tests.leaks import SCAN

STANDIN = TEMPLATE_ROOT / "tests" / "fixtures" / "deploy_standin.py"
SHELLCHECK = TEMPLATE_ROOT / ".venv" / "bin" / "shellcheck"
TEST_KEY = "sk-test-DEPLOY-0123456789abcdef"
CLIENT_KEYS = "client-key-alpha-42\nclient-key-beta-43\n"
for _number, _key in enumerate([TEST_KEY, *CLIENT_KEYS.split()]):
    SCAN.register(f"deploy.sh test key {_number}", _key)
NO_ACCOUNT = "You do not currently have an active account selected"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="session")
def system_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The system's commands without the real gcloud and docker, so only stand-ins answer."""
    target = tmp_path_factory.mktemp("system-bin")
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(folder).iterdir():
            link = target / tool.name
            if tool.name not in {"gcloud", "docker"} and not link.exists():
                link.symlink_to(tool)
    return target


@dataclass
class Deploy:
    """What one deploy.sh run printed and which gcloud/docker calls it made."""

    returncode: int
    stdout: str
    stderr: str
    calls: list[dict[str, Any]]

    def argvs(self, tool: str = "gcloud") -> list[list[str]]:
        return [call["argv"] for call in self.calls if call["tool"] == tool]

    def index(self, *prefix: str) -> int:
        """Position of the first call whose argv starts with prefix (tool first)."""
        for position, call in enumerate(self.calls):
            if [call["tool"], *call["argv"]][: len(prefix)] == list(prefix):
                return position
        raise AssertionError(f"no call {prefix} in {[c['argv'] for c in self.calls]}")

    def call(self, *prefix: str) -> dict[str, Any]:
        return self.calls[self.index(*prefix)]

    def creates(self) -> list[list[str]]:
        return [argv for argv in self.argvs() if "create" in argv]


class Sandbox:
    """A PATH with the stand-ins first, their shared state, and a way to run deploy.sh."""

    def __init__(self, root: Path, system_bin: Path, docker: bool) -> None:
        self.root, self.system_bin = root, system_bin
        self.bin, self.state, self.log = root / "bin", root / "state", root / "calls.jsonl"
        for folder in (self.bin, self.state, root / "home"):
            folder.mkdir(parents=True, exist_ok=True)
        for tool in ("gcloud", "docker") if docker else ("gcloud",):
            wrapper = self.bin / tool
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" {tool} "$@"\n')
            wrapper.chmod(0o755)

    def run(self, project: Path, *args: str, **env: str) -> Deploy:
        start = len(self.log.read_text().splitlines()) if self.log.exists() else 0
        base = {
            "PATH": f"{self.bin}:{self.system_bin}",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "STANDIN_LOG": str(self.log),
            "STANDIN_STATE": str(self.state),
        }
        result = subprocess.run(
            ["bash", str(project / "deploy.sh"), *args],
            cwd=self.root,
            env=base | env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        lines = self.log.read_text().splitlines()[start:] if self.log.exists() else []
        calls = [json.loads(line) for line in lines]
        SCAN.feed(f"deploy.sh {' '.join(args)}", result.stdout + result.stderr + "\n".join(lines))
        return Deploy(result.returncode, result.stdout, result.stderr, calls)


Sandboxes = Callable[..., Sandbox]


@pytest.fixture
def sandbox(tmp_path: Path, system_bin: Path) -> Sandboxes:
    """sandbox(docker=True): a fresh stand-in project (nothing exists yet)."""
    count = iter(range(100))
    return lambda docker=True: Sandbox(tmp_path / f"sandbox{next(count)}", system_bin, docker)


def flag_value(argv: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}=")]
    assert len(values) == 1, (name, argv)
    return values[0]


# --- Scenarios -------------------------------------------------------------------------------


def test_fresh_project_creates_everything_in_order_then_deploys(
    bake_once: Bake, sandbox: Sandboxes
) -> None:
    """Nothing exists: repo, image, account, secret and binding come before the deploy, in order,
    each create after its describe, and every step is numbered."""
    run = sandbox().run(bake_once(), OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 0, run.stderr
    order = [
        ("gcloud", "auth", "list"),
        ("gcloud", "services", "enable"),
        ("gcloud", "artifacts", "repositories", "describe"),
        ("gcloud", "artifacts", "repositories", "create"),
        ("docker", "build"),
        ("gcloud", "auth", "configure-docker"),
        ("docker", "push"),
        ("gcloud", "iam", "service-accounts", "describe"),
        ("gcloud", "iam", "service-accounts", "create"),
        ("gcloud", "secrets", "describe"),
        ("gcloud", "secrets", "create"),
        ("gcloud", "secrets", "add-iam-policy-binding"),
        ("gcloud", "run", "deploy"),
        ("gcloud", "run", "services", "describe"),
    ]
    positions = [run.index(*call) for call in order]
    assert positions == sorted(positions)
    steps = re.findall(r"^\[(\d)/(\d)\] ", run.stdout, flags=re.MULTILINE)
    assert steps == [(str(n), "8") for n in range(1, 9)]
    assert "Deployed: https://my-service-abc123xyz-uc.a.run.app" in run.stdout
    image = flag_value(run.call("gcloud", "run", "deploy")["argv"], "image")
    assert re.fullmatch(
        r"us-central1-docker\.pkg\.dev/my-gcp-project/cloud-run/my-service:\S+", image
    )
    assert run.call("docker", "push")["argv"] == ["push", image]


def test_secret_is_created_from_stdin_and_bound_on_that_secret_only(
    bake_once: Bake, sandbox: Sandboxes
) -> None:
    """The key reaches `secrets create` on stdin, and the accessor role is granted on the secret
    itself, to the runtime account, never on the project."""
    run = sandbox().run(bake_once(), OPENAI_API_KEY=TEST_KEY)
    create = run.call("gcloud", "secrets", "create")
    assert "--data-file=-" in create["argv"]
    assert create["stdin"] == {"bytes": len(TEST_KEY), "sha256": sha256(TEST_KEY)}
    binding = run.call("gcloud", "secrets", "add-iam-policy-binding")["argv"]
    assert binding[:3] == ["secrets", "add-iam-policy-binding", "openai-api-key"]
    assert flag_value(binding, "role") == "roles/secretmanager.secretAccessor"
    assert flag_value(binding, "member") == (
        "serviceAccount:my-service@my-gcp-project.iam.gserviceaccount.com"
    )
    assert not any(argv[:2] == ["projects", "add-iam-policy-binding"] for argv in run.argvs())


def test_rerun_creates_nothing_and_deploys_again(bake_once: Bake, sandbox: Sandboxes) -> None:
    """Everything exists on the second run: no create call, no key needed, the deploy still runs."""
    box = sandbox()
    assert box.run(bake_once(), OPENAI_API_KEY=TEST_KEY).returncode == 0
    rerun = box.run(bake_once())
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.creates() == []
    assert rerun.index("gcloud", "secrets", "versions", "describe") < rerun.index(
        "gcloud", "run", "deploy"
    )
    assert "Secret openai-api-key exists." in rerun.stdout


def test_stops_before_deploying_without_secret_or_key(bake_once: Bake, sandbox: Sandboxes) -> None:
    """No secret and no OPENAI_API_KEY: stop before the deploy and say how to create it safely."""
    run = sandbox().run(bake_once())
    assert run.returncode == 1
    assert "secret openai-api-key does not exist and $OPENAI_API_KEY is not set" in run.stderr
    assert "--data-file=-" in run.stderr
    assert not any(argv[:2] in (["secrets", "create"], ["run", "deploy"]) for argv in run.argvs())


def test_builds_remotely_when_docker_is_missing(bake_once: Bake, sandbox: Sandboxes) -> None:
    """Without docker on PATH the image is built by Cloud Build (API enabled), and the script
    says so."""
    run = sandbox(docker=False).run(bake_once(), OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 0, run.stderr
    assert "Cloud Build (no docker on PATH)" in run.stdout
    assert run.argvs("docker") == []
    submit = run.call("gcloud", "builds", "submit")
    assert submit["argv"][-1] == "."
    assert (Path(submit["cwd"]) / "Dockerfile").is_file()
    assert flag_value(submit["argv"], "tag") == flag_value(
        run.call("gcloud", "run", "deploy")["argv"], "image"
    )
    assert "cloudbuild.googleapis.com" in run.call("gcloud", "services", "enable")["argv"]


BUILD_ACCOUNT = "123456789012-compute@developer.gserviceaccount.com"  # the stand-in's answer
BUILD_GRANTS = {
    ("artifacts", "repositories", "add-iam-policy-binding"): "roles/artifactregistry.writer",
    ("projects", "add-iam-policy-binding"): "roles/logging.logWriter",
    ("storage", "buckets", "add-iam-policy-binding"): "roles/storage.objectViewer",
}


def printed_gcloud_lines(text: str) -> list[list[str]]:
    """The gcloud commands a message tells the user to run, one per line, as argv."""
    return [shlex.split(line)[1:] for line in text.splitlines() if line.startswith("  gcloud ")]


def test_remote_build_names_the_account_that_builds(bake_once: Bake, sandbox: Sandboxes) -> None:
    """--build cloud looks up Cloud Build's default service account and says which it is."""
    run = sandbox(docker=False).run(bake_once(), OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 0, run.stderr
    lookup = run.call("gcloud", "builds", "get-default-service-account")["argv"]
    assert flag_value(lookup, "project") == "my-gcp-project"
    assert run.index("gcloud", "builds", "get-default-service-account") < run.index(
        "gcloud", "builds", "submit"
    )
    assert f"Cloud Build builds as {BUILD_ACCOUNT}." in run.stdout


def test_failed_remote_build_prints_the_grants_its_account_needs(
    bake_once: Bake, sandbox: Sandboxes
) -> None:
    """Projects made since 2024 build as the Compute Engine default account, often without the
    roles a build needs: a failed build stops before the deploy and prints, for that account, the
    exact grants (image repository, build log, uploaded source)."""
    run = sandbox(docker=False).run(
        bake_once(), "--region=europe-west1", OPENAI_API_KEY=TEST_KEY, STANDIN_BUILD_FAILS="1"
    )
    assert run.returncode == 1
    assert "the Cloud Build build failed" in run.stderr
    assert "gcloud builds get-default-service-account --project=my-gcp-project" in run.stderr
    assert not any(argv[:2] == ["run", "deploy"] for argv in run.argvs())
    grants = printed_gcloud_lines(run.stderr)
    roles = {}
    for argv in grants:
        command = next(key for key in BUILD_GRANTS if tuple(argv[: len(key)]) == key)
        roles[command] = flag_value(argv, "role")
        assert flag_value(argv, "member") == f"serviceAccount:{BUILD_ACCOUNT}"
    assert roles == BUILD_GRANTS
    repo_grant = next(argv for argv in grants if argv[0] == "artifacts")
    assert repo_grant[3] == "cloud-run"
    assert flag_value(repo_grant, "location") == "europe-west1"
    bucket_grant = next(argv for argv in grants if argv[0] == "storage")
    assert bucket_grant[3] == "gs://my-gcp-project_cloudbuild"


@pytest.mark.parametrize(
    ("ci_provider", "enabled"), [("cloud-build", True), ("github-actions", False), ("none", False)]
)
def test_cloud_build_api_is_enabled_for_cloudbuild_yaml_even_after_a_local_build(
    bake_once: Bake, sandbox: Sandboxes, ci_provider: str, enabled: bool
) -> None:
    """With ci_provider=cloud-build the next step is `gcloud builds submit --config
    cloudbuild.yaml`, so the Cloud Build API is enabled even when docker built the image."""
    run = sandbox().run(bake_once(ci_provider=ci_provider), OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 0, run.stderr
    assert run.argvs("docker")  # built locally
    apis = run.call("gcloud", "services", "enable")["argv"]
    assert ("cloudbuild.googleapis.com" in apis) is enabled


def test_local_build_without_docker_says_what_to_do(bake_once: Bake, sandbox: Sandboxes) -> None:
    """--build local with no docker stops in preflight, pointing at Docker and --build cloud."""
    run = sandbox(docker=False).run(bake_once(), "--build", "local", OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 1
    assert "docker is not installed" in run.stderr
    assert "--build cloud" in run.stderr
    assert run.calls == []


@pytest.mark.parametrize(
    ("buildx", "build_argv"),
    [
        ("1", ["buildx", "build", "--platform=linux/amd64"]),
        ("", ["build", "--platform=linux/amd64"]),
    ],
    ids=["with-buildx", "without-buildx"],
)
def test_local_build_targets_linux_amd64(
    bake_once: Bake, sandbox: Sandboxes, buildx: str, build_argv: list[str]
) -> None:
    """Cloud Run needs linux/amd64: buildx when it exists, else plain docker build."""
    run = sandbox().run(bake_once(), OPENAI_API_KEY=TEST_KEY, STANDIN_BUILDX=buildx)
    assert run.returncode == 0, run.stderr
    builds = [argv for argv in run.argvs("docker") if "--platform=linux/amd64" in argv]
    assert len(builds) == 1
    assert builds[0][: len(build_argv)] == build_argv


@pytest.mark.parametrize("client_auth", ["iam", "api-key", "none"])
def test_deploy_flags_match_client_auth_mode(
    bake_once: Bake, sandbox: Sandboxes, client_auth: str
) -> None:
    """Every mode gets the probe, cpu boost, labels, the OpenAI secret and the project (for log
    trace ids); iam is private, api-key and none are public; api-key also mounts the client keys
    secret as a file."""
    run = sandbox().run(
        bake_once(client_auth=client_auth), OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS=CLIENT_KEYS
    )
    assert run.returncode == 0, run.stderr
    deploy = run.call("gcloud", "run", "deploy")["argv"]
    assert deploy[2] == "my-service"
    assert "--cpu-boost" in deploy
    assert flag_value(deploy, "startup-probe").startswith("httpGet.path=/ready,")
    assert f"client-auth={client_auth}" in flag_value(deploy, "labels").split(",")
    assert flag_value(deploy, "min-instances") == "0"
    assert flag_value(deploy, "max-instances") == "5"
    public = client_auth != "iam"
    assert ("--allow-unauthenticated" in deploy) is public
    assert ("--no-allow-unauthenticated" in deploy) is not public
    secrets = flag_value(deploy, "set-secrets").split(",")
    assert secrets[0] == "OPENAI_API_KEY=openai-api-key:latest"
    bound = [argv[2] for argv in run.argvs() if argv[1:2] == ["add-iam-policy-binding"]]
    if client_auth == "api-key":
        assert secrets[1:] == ["/secrets/client-api-keys/keys=my-service-client-api-keys:latest"]
        assert flag_value(deploy, "set-env-vars").split(",") == [
            "GOOGLE_CLOUD_PROJECT=my-gcp-project",
            "CLIENT_API_KEYS_FILE=/secrets/client-api-keys/keys",
        ]
        assert bound == ["openai-api-key", "my-service-client-api-keys"]
        keys = [
            c
            for c in run.calls
            if c["argv"][:3] == ["secrets", "create", "my-service-client-api-keys"]
        ]
        assert keys[0]["stdin"]["sha256"] == sha256(CLIENT_KEYS)
    else:
        assert secrets[1:] == []
        assert flag_value(deploy, "set-env-vars") == "GOOGLE_CLOUD_PROJECT=my-gcp-project"
        assert bound == ["openai-api-key"]


def test_private_service_output_says_how_to_call_it(bake_once: Bake, sandbox: Sandboxes) -> None:
    """client_auth=iam: the URL comes with an identity-token curl, the proxy, the invoker role."""
    run = sandbox().run(bake_once(client_auth="iam"), OPENAI_API_KEY=TEST_KEY)
    assert "gcloud auth print-identity-token" in run.stdout
    assert "gcloud run services proxy my-service --region=us-central1" in run.stdout
    assert "--role=roles/run.invoker" in run.stdout


def test_open_service_warns_about_the_cost_ceiling(bake_once: Bake, sandbox: Sandboxes) -> None:
    """client_auth=none: a warning names the risk (anyone spends the budget) and the ceiling."""
    run = sandbox().run(
        bake_once(client_auth="none"), "--max-instances", "3", OPENAI_API_KEY=TEST_KEY
    )
    assert run.returncode == 0, run.stderr
    assert "WARNING: client_auth=none" in run.stderr
    assert "can spend your OpenAI budget" in " ".join(run.stderr.split())
    assert "--max-instances=3" in run.stderr


def test_api_key_mode_stops_without_client_keys(bake_once: Bake, sandbox: Sandboxes) -> None:
    """api-key mode with no client keys secret and no CLIENT_API_KEYS: stop, say how to make one."""
    run = sandbox().run(bake_once(client_auth="api-key"), OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 1
    assert "my-service-client-api-keys does not exist and $CLIENT_API_KEYS is not set" in run.stderr
    assert "openssl rand -hex 32" in run.stderr
    assert not any(argv[:2] == ["run", "deploy"] for argv in run.argvs())


def test_secret_values_never_appear_in_argv_or_output(bake_once: Bake, sandbox: Sandboxes) -> None:
    """The OpenAI key and the client keys travel on stdin only: not in any recorded argv or
    child environment, not in stdout or stderr, and the stand-in's log holds digests, not values."""
    box = sandbox()
    run = box.run(
        bake_once(client_auth="api-key"), OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS=CLIENT_KEYS
    )
    assert run.returncode == 0, run.stderr
    dry = box.run(bake_once(client_auth="api-key"), "--dry-run", OPENAI_API_KEY=TEST_KEY)
    assert [c["stdin"]["bytes"] for c in run.calls if "stdin" in c] == [
        len(TEST_KEY),
        len(CLIENT_KEYS),
    ]
    assert [call["secret_env"] for call in run.calls] == [[]] * len(run.calls)
    for secret in (TEST_KEY, *CLIENT_KEYS.split()):
        for text in (run.stdout, run.stderr, dry.stdout, dry.stderr, box.log.read_text()):
            assert secret not in text


def test_no_active_account_stops_in_preflight(bake_once: Bake, sandbox: Sandboxes) -> None:
    """Nobody logged in: stop after `gcloud auth list` and say which command fixes it."""
    run = sandbox().run(bake_once(), OPENAI_API_KEY=TEST_KEY, STANDIN_NO_ACCOUNT="1")
    assert run.returncode == 1
    assert "Run: gcloud auth login" in run.stderr
    assert run.argvs() == [["auth", "list", "--filter=status:ACTIVE", "--format=value(account)"]]


def test_describe_errors_other_than_not_found_stop_the_script(
    bake_once: Bake, sandbox: Sandboxes
) -> None:
    """A PERMISSION_DENIED describe is not taken for "missing": no create follows it."""
    run = sandbox().run(bake_once(), OPENAI_API_KEY=TEST_KEY, STANDIN_DENY="1")
    assert run.returncode == 1
    assert "PERMISSION_DENIED" in run.stderr
    assert run.creates() == []


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


def test_binding_waits_for_a_new_service_account(bake_once: Bake, sandbox: Sandboxes) -> None:
    """IAM may refuse a just-created account as INVALID_ARGUMENT: the binding is retried, and the
    deploy only runs once it succeeded."""
    run = sandbox().run(bake_once(), OPENAI_API_KEY=TEST_KEY, STANDIN_NEW_ACCOUNT_LAG="1")
    assert run.returncode == 0, run.stderr
    bindings = [c for c in run.argvs() if c[:2] == ["secrets", "add-iam-policy-binding"]]
    assert len(bindings) == 2
    assert "not visible to IAM yet; retrying in 5 s" in run.stdout


def test_flags_win_over_environment_variables_over_answers(
    bake_once: Bake, sandbox: Sandboxes
) -> None:
    """Each setting comes from its flag, else its environment variable, else the answers."""
    run = sandbox().run(
        bake_once(),
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
    assert flag_value(deploy, "set-secrets") == "OPENAI_API_KEY=other-secret:3"
    assert (
        flag_value(deploy, "service-account")
        == "other-runner@other-project.iam.gserviceaccount.com"
    )
    assert flag_value(deploy, "image").startswith(
        "europe-west1-docker.pkg.dev/other-project/images/flag-service:"
    )


def test_env_flags_add_runtime_settings_to_the_deploy(
    bake_once: Bake, sandbox: Sandboxes, tmp_path: Path
) -> None:
    """--env KEY=VALUE (repeatable) is appended, in order, to deploy.sh's own --set-env-vars value;
    values with spaces, = and shell characters pass through literally, never evaluated."""
    marker = tmp_path / "pwned"
    run = sandbox().run(
        bake_once(client_auth="api-key"),
        "--env", "OPENAI_MODEL=gpt-4o",
        "--env=RATE_LIMIT_PER_MINUTE=30",
        "--env", "OPENAI_BASE_URL=https://proxy.example.com/v1?a=b",
        "--env", f"LOG_LEVEL=$(touch {marker}) `id`",
        OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS=CLIENT_KEYS,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert flag_value(run.call("gcloud", "run", "deploy")["argv"], "set-env-vars").split(",") == [
        "GOOGLE_CLOUD_PROJECT=my-gcp-project",
        "CLIENT_API_KEYS_FILE=/secrets/client-api-keys/keys",
        "OPENAI_MODEL=gpt-4o",
        "RATE_LIMIT_PER_MINUTE=30",
        "OPENAI_BASE_URL=https://proxy.example.com/v1?a=b",
        f"LOG_LEVEL=$(touch {marker}) `id`",
    ]
    assert "Runtime settings (--env, DEPLOY_ENV): OPENAI_MODEL RATE_LIMIT_PER_MINUTE" in run.stdout
    assert not marker.exists()


def test_deploy_env_in_the_script_is_set_on_every_deploy(
    bake_once: Bake, sandbox: Sandboxes, tmp_path: Path
) -> None:
    """DEPLOY_ENV at the top of deploy.sh holds settings for every deploy (CI's too, which passes
    no --env); --env adds to it and is checked the same way."""
    project = tmp_path / "my-service"
    shutil.copytree(bake_once(), project)
    script = project / "deploy.sh"
    script.write_text(
        script.read_text().replace("\nDEPLOY_ENV=()\n", "\nDEPLOY_ENV=(OPENAI_MAX_TOKENS=512)\n", 1)
    )
    box = sandbox()
    run = box.run(project, "--env", "OPENAI_MODEL=gpt-4o", OPENAI_API_KEY=TEST_KEY)
    assert flag_value(run.call("gcloud", "run", "deploy")["argv"], "set-env-vars") == (
        "GOOGLE_CLOUD_PROJECT=my-gcp-project,OPENAI_MAX_TOKENS=512,OPENAI_MODEL=gpt-4o"
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
    bake_once: Bake, sandbox: Sandboxes, setting: str, says: str
) -> None:
    """Keys never become plain environment variables (visible in the console, in `describe` and
    in CI logs): refused with the secret to use instead, and the value is never echoed."""
    run = sandbox().run(bake_once(client_auth="api-key"), "--env", setting, OPENAI_API_KEY=TEST_KEY)
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
    project = bake(service_name="tagged-service")
    sha = commit_all(project)
    assert deployed_tag(sandbox().run(project, OPENAI_API_KEY=TEST_KEY)) == sha


def test_image_tag_marks_uncommitted_changes(bake: Bake, sandbox: Sandboxes) -> None:
    """Uncommitted changes are in the image but not in the commit: sha-dirty-TIME, so the tag
    never claims a commit that does not hold what was deployed."""
    project = bake(service_name="dirty-service")
    sha = commit_all(project)
    (project / "app" / "extra.py").write_text("EXTRA = 1\n")
    tag = deployed_tag(sandbox().run(project, OPENAI_API_KEY=TEST_KEY))
    assert re.fullmatch(rf"{sha}-dirty-{TIMESTAMP}", tag), tag


def test_image_tag_ignores_a_parent_repository(
    bake_once: Bake, sandbox: Sandboxes, tmp_path: Path
) -> None:
    """A generated repo inside another repository (e.g. build/my-service) is tagged with the time,
    never with the parent's sha, which names code that is not the deployed service."""
    parent = tmp_path / "parent"
    project = parent / "build" / "my-service"
    shutil.copytree(bake_once(), project)
    parent_sha = commit_all(parent)
    tag = deployed_tag(sandbox().run(project, OPENAI_API_KEY=TEST_KEY))
    assert parent_sha not in tag
    assert re.fullmatch(TIMESTAMP, tag), tag


def test_image_tag_outside_git_is_the_time(
    bake_once: Bake, sandbox: Sandboxes, tmp_path: Path
) -> None:
    """No repository at all: a UTC timestamp."""
    project = tmp_path / "plain" / "my-service"
    shutil.copytree(bake_once(), project)
    tag = deployed_tag(
        sandbox().run(project, OPENAI_API_KEY=TEST_KEY, GIT_CEILING_DIRECTORIES=str(tmp_path))
    )
    assert re.fullmatch(TIMESTAMP, tag), tag


def test_dry_run_prints_quoted_commands_and_runs_none(bake_once: Bake, sandbox: Sandboxes) -> None:
    """--dry-run makes no gcloud call (docker is only asked whether buildx exists) and prints
    every command of a fresh deploy, shell-quoted so it can be pasted back."""
    run = sandbox().run(bake_once(client_auth="api-key"), "--dry-run", "--region=europe-west1")
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


def test_help_documents_every_option_and_variable(bake_once: Bake, sandbox: Sandboxes) -> None:
    """--help lists every flag and environment variable, and runs nothing."""
    run = sandbox().run(bake_once(), "--help")
    assert run.returncode == 0
    for word in (
        "PROJECT_ID", "REGION", "SERVICE_NAME", "SERVICE_ACCOUNT_ID", "SECRET_NAME",
        "SECRET_VERSION", "ARTIFACT_REGISTRY_REPO", "MIN_INSTANCES", "MAX_INSTANCES",
        "CLIENT_KEYS_SECRET_NAME", "OPENAI_API_KEY", "CLIENT_API_KEYS", "--project", "--region",
        "--service", "--service-account", "--secret", "--secret-version", "--repo",
        "--min-instances", "--max-instances", "--client-keys-secret", "--build", "--dry-run",
        "--env KEY=VALUE", "DEPLOY_ENV", "bash 4",
    ):  # fmt: skip
        assert word in run.stdout
    assert run.calls == []


def test_unknown_option_is_a_usage_error(bake_once: Bake, sandbox: Sandboxes) -> None:
    """A mistyped flag stops with status 2 before anything runs."""
    run = sandbox().run(bake_once(), "--regoin=us-east1")
    assert run.returncode == 2
    assert "unknown option --regoin" in run.stderr
    assert run.calls == []


# --- Hostile and invalid overrides ------------------------------------------------------------

HOSTILE = [
    ("REGION", "us-central1; touch {marker}"),
    ("SERVICE_NAME", "$(touch {marker})"),
    ("PROJECT_ID", "`touch {marker}`"),
    ("SECRET_NAME", "key\ntouch {marker}"),
    ("MIN_INSTANCES", "a[$(touch {marker})]"),
    ("MAX_INSTANCES", "x[$(touch {marker})]"),
    ("SECRET_VERSION", "latest;touch {marker}"),
    ("ARTIFACT_REGISTRY_REPO", "repo$(touch {marker})"),
    ("SERVICE_ACCOUNT_ID", "runner\n$(touch {marker})"),
    ("REGION", "us-east1-d"),
    ("REGION", "us"),
    ("REGION", "EU"),
    ("PROJECT_ID", "my-google-project"),
    ("PROJECT_ID", "abc"),
    ("SERVICE_NAME", "My_Service"),
    ("SERVICE_NAME", "a" * 50),
    ("SERVICE_ACCOUNT_ID", "abc"),
    ("SECRET_NAME", "a/b"),
    ("ARTIFACT_REGISTRY_REPO", "Cloud_Run"),
    ("MAX_INSTANCES", "0"),
    ("MAX_INSTANCES", "1001"),
    ("MIN_INSTANCES", "-1"),
    # Option injection, Unicode digits and invisibles, a path in a version.
    ("PROJECT_ID", "my-project --impersonate-service-account=x@y.iam.gserviceaccount.com"),
    ("SERVICE_NAME", "--help"),
    ("REGION", "--region=us-east1"),
    ("SECRET_NAME", "--data-file=/etc/passwd"),
    ("SECRET_VERSION", "../1"),
    ("SECRET_VERSION", "latest --project=other"),
    ("MIN_INSTANCES", "\u0663"),
    ("MAX_INSTANCES", "\uff15"),
    ("MAX_INSTANCES", "5 "),
    ("REGION", "us-central1\u200b"),
    ("SERVICE_ACCOUNT_ID", "runner-\u0430bc"),
]


@pytest.mark.parametrize(("variable", "value"), HOSTILE, ids=[f"{v}={x!r}" for v, x in HOSTILE])
def test_rejects_hostile_or_invalid_override_before_running_anything(
    bake_once: Bake, sandbox: Sandboxes, tmp_path: Path, variable: str, value: str
) -> None:
    """An override that breaks a rule stops the script with the variable named, before any
    gcloud or docker call, and nothing in it is ever executed."""
    marker = tmp_path / "pwned"
    run = sandbox().run(
        bake_once(), OPENAI_API_KEY=TEST_KEY, **{variable: value.format(marker=marker)}
    )
    assert run.returncode == 1
    assert f"{variable} (--" in run.stderr
    assert "nothing was run" in run.stderr
    assert run.calls == []
    assert not marker.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--region", "us-central1 $(touch {marker})"],
        ["--min-instances=6", "--max-instances=5"],
        ["--build=remote"],
        ["--client-keys-secret", "keys;touch {marker}"],
        ["--env", "lower_case=1"],
        ["--env", "1ABC=1"],
        ["--env", "NO_EQUALS_SIGN"],
        ["--env", "A-B=1"],
        ["--env", "OPENAI_MODEL=gpt-4o,OPENAI_API_KEY=sk-smuggled"],
        ["--env", "OPENAI_MODEL=gpt-4o\nOPENAI_API_KEY=x"],
        ["--env", "OPENAI_MODEL=\u200bgpt-4o\t"],
        ["--env", "MODEL\u0130=x"],
        ["--env", "X=1;touch {marker}", "--env", "$(touch {marker})=1"],
        ["--env", "PORT=9090"],
        ["--env", "K_SERVICE=x"],
        ["--env", "GOOGLE_CLOUD_PROJECT=other-project"],
        ["--env", "CLIENT_API_KEYS_FILE=/etc/passwd"],
        ["--env", "--project=other-project"],
    ],
    ids=["region", "min-above-max", "build", "client-keys-secret", "env-lower-case",
         "env-leading-digit", "env-no-equals", "env-hyphen", "env-comma-smuggling",
         "env-newline", "env-tab", "env-unicode-key", "env-injection", "env-port",
         "env-k-service", "env-own-variable", "env-own-file", "env-option"],
)  # fmt: skip
def test_rejects_invalid_flag_values_before_running_anything(
    bake_once: Bake, sandbox: Sandboxes, tmp_path: Path, args: list[str]
) -> None:
    """Flags are validated like environment variables (api-key mode checks its second secret)."""
    marker = tmp_path / "pwned"
    run = sandbox().run(
        bake_once(client_auth="api-key"),
        *(arg.format(marker=marker) for arg in args),
        OPENAI_API_KEY=TEST_KEY,
    )
    assert run.returncode == 1
    assert "nothing was run" in run.stderr
    assert run.calls == []
    assert not marker.exists()


# --- The bash validators agree with the pre-gen hook ------------------------------------------

GOOD_AND_BAD: dict[str, tuple[Callable[[object], str | None], list[str]]] = {
    "validate_service_name": (
        hook.check_service_name,
        ["my-service", "a", "a1", "a" * 49, "a" * 50, "A", "1abc", "abc-", "ab_c", "my service",
         "", "é", "my-service\n", "\nmy-service", "$(x)", "a" + "-" * 47 + "b", "a.b"],
    ),
    "validate_project_id": (
        hook.check_project_id,
        ["my-gcp-project", "abcdef", "a" * 30, "a" * 31, "abcde", "my-google-x", "nullproj1",
         "undefined-1", "my-ssl-proj", "My-project", "1project", "project-", "proj_ect",
         "my-gcp-project\n", "", "projé-1"],
    ),
    "validate_service_account_id": (
        hook.check_service_account_id,
        ["my-service", "abcdef", "abcde", "a" * 30, "a" * 31, "Abcdef", "abcdef-", "abc_def",
         "a-b-c-d-e", "1abcdef", "abcdef\n", "abcdeé"],
    ),
    "validate_secret_name": (
        hook.check_secret_name,
        ["openai-api-key", "A_b-1", "a", "x" * 255, "x" * 256, "", "a b", "a/b", "a.b", "key\n",
         "ключ", "$(id)"],
    ),
    "validate_artifact_registry_repo": (
        hook.check_artifact_registry_repo,
        ["cloud-run", "a", "a" * 63, "a" * 64, "Cloud", "1repo", "repo-", "re_po", "re.po", "",
         "repo\n"],
    ),
    "validate_region": (
        hook.check_region,
        [*sorted(hook.CLOUD_RUN_REGIONS), "us-east1-d", "us", "EU", "global", "us-central",
         "us-central1 ", " us-central1", "US-CENTRAL1", "us-central1\n", "", "mars-north1",
         "us-central1 us-east1", "us-central1;x", "*", "us-central?"],
    ),
}  # fmt: skip

INSTANCE_PAIRS = [
    ("0", "5"), ("0", "1"), ("1000", "1000"), ("0", "1000"), ("0", "1001"), ("0", "0"),
    ("5", "4"), ("010", "20"), ("010", "9"), ("00", "1"), ("09", "10"), ("-1", "5"),
    ("1.5", "5"), ("", "5"), ("0", ""), ("0", "10000"), ("a", "5"), (" 1", "5"), ("1", "5\n"),
    ("a[0]", "5"),
]  # fmt: skip


def bash_verdicts(project: Path, function: str, *values: str) -> list[bool]:
    """Run a validator of scripts/validate.sh on each value (or pair) in one bash process."""
    script = (
        "source scripts/validate.sh; f=$1; n=$2; shift 2; while (($#)); do "
        'if "$f" "${@:1:n}" 2>/dev/null; then echo ok; else echo bad; fi; shift "$n"; done'
    )
    width = 2 if function == "validate_instances" else 1
    result = subprocess.run(
        ["bash", "-c", script, "bash", function, str(width), *values],
        cwd=project, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [line == "ok" for line in result.stdout.splitlines()]


@pytest.mark.parametrize("function", sorted(GOOD_AND_BAD))
def test_bash_validators_agree_with_the_pre_gen_hook(default_project: Path, function: str) -> None:
    """A value in the corpus passes the bash validator exactly when it passes the hook."""
    check, corpus = GOOD_AND_BAD[function]
    expected = [check(value) is None for value in corpus]
    assert any(expected), "the corpus needs valid values"
    assert not all(expected), "the corpus needs invalid values"
    assert dict(
        zip(corpus, bash_verdicts(default_project, function, *corpus), strict=True)
    ) == dict(zip(corpus, expected, strict=True))


def test_bash_instance_rules_agree_with_the_pre_gen_hook(default_project: Path) -> None:
    """min/max instances: whole numbers, 1 <= max <= 1000, min <= max, "010" read as ten."""
    expected = [hook.check_instances(low, high) == [] for low, high in INSTANCE_PAIRS]
    flat = [value for pair in INSTANCE_PAIRS for value in pair]
    verdicts = bash_verdicts(default_project, "validate_instances", *flat)
    assert dict(zip(INSTANCE_PAIRS, verdicts, strict=True)) == dict(
        zip(INSTANCE_PAIRS, expected, strict=True)
    )


def test_bash_region_list_is_the_hooks(default_project: Path) -> None:
    """A region added to one list and not the other would make them disagree."""
    listed = subprocess.run(
        ["bash", "-c", 'source scripts/validate.sh; printf "%s\\n" $CLOUD_RUN_REGIONS'],
        cwd=default_project, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert sorted(listed) == sorted(hook.CLOUD_RUN_REGIONS)


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
    """deploy.sh and the scripts it sources (scripts/common.sh, scripts/validate.sh) are
    shellcheck clean and parse, whatever the answers."""
    require(SHELLCHECK.exists(), f"shellcheck is not installed at {SHELLCHECK}; run make install")
    assert len(COMBINATIONS["49-character-name"]["service_name"]) == 49
    result = subprocess.run(
        [str(SHELLCHECK), "-x", "deploy.sh", "scripts/common.sh", "scripts/validate.sh"],
        cwd=combination, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    subprocess.run(["bash", "-n", "deploy.sh"], cwd=combination, check=True)
    assert os.access(combination / "deploy.sh", os.X_OK)


# Jinja statement and comment delimiters (bash's `${#var}` is not one), and the raw markers' words.
TEMPLATE_RESIDUE = re.compile(r"\{%|%\}|(?<!\$)\{#|#\}|\bend ?raw\b")


def test_rendered_scripts_leave_no_template_residue(combination: Path) -> None:
    """The Jinja raw markers around the bash leave no trace: no stray `#` line, no trailing
    whitespace, no marker text, in deploy.sh and in every script under scripts/."""
    scripts = [combination / "deploy.sh", *sorted((combination / "scripts").glob("*.sh"))]
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


def replay(gcloud: str, argv: list[str], cwd: Path, scratch: Path) -> tuple[int, str]:
    """Run one recorded command with the real gcloud: throwaway HOME and config, no prompts."""
    home = Path(tempfile.mkdtemp(dir=scratch))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    }
    result = subprocess.run(
        [gcloud, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    return result.returncode, result.stderr


def replay_all(
    gcloud: str, lines: list[list[str]], project: Path, tmp_path: Path
) -> list[tuple[int, str]]:
    """Replay every line through the real gcloud; each must run or stop at "no active account"."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda argv: replay(gcloud, argv, project, tmp_path), lines))
    failures = [
        (shlex.join(argv), code, stderr.strip().splitlines()[:3])
        for argv, (code, stderr) in zip(lines, outcomes, strict=True)
        if not (code == 0 or (code == 1 and NO_ACCOUNT in stderr))
    ]
    assert failures == []
    return outcomes


@pytest.fixture(scope="module")
def recorded_gcloud_lines(
    bake_once: Bake, system_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[list[str]]]:
    """Every distinct gcloud command line of the scenarios: each mode, remote build, rerun,
    runtime settings (--env), and the grants a failed remote build tells the user to run."""
    root = tmp_path_factory.mktemp("recorded")
    lines: list[list[str]] = []
    settings = [
        "--env", "OPENAI_MODEL=gpt-4o", "--env=RATE_LIMIT_PER_MINUTE=30",
        "--env", "OPENAI_MAX_TOKENS=512", "--env", "OPENAI_BASE_URL=https://x.example/v1",
    ]  # fmt: skip
    for number, (answers, docker, args) in enumerate(
        [({"client_auth": "iam"}, True, settings), ({"client_auth": "api-key"}, False, settings),
         ({"client_auth": "none", "ci_provider": "cloud-build"}, True, [])]
    ):  # fmt: skip
        box = Sandbox(root / str(number), system_bin, docker)
        for _ in range(2):  # fresh, then rerun
            run = box.run(
                bake_once(**answers), *args, OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS=CLIENT_KEYS
            )
            assert run.returncode == 0, run.stderr
            lines += [argv for argv in run.argvs() if argv not in lines]
    failed = Sandbox(root / "failed-build", system_bin, False).run(
        bake_once(), OPENAI_API_KEY=TEST_KEY, STANDIN_BUILD_FAILS="1"
    )
    assert failed.returncode == 1
    lines += printed_gcloud_lines(failed.stderr)
    return bake_once(client_auth="api-key"), lines


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
    outcomes = replay_all(real_gcloud, lines, project, tmp_path)
    assert any(code == 0 for code, _ in outcomes)  # auth configure-docker / auth list succeed


# --- The README's deploy instructions ---------------------------------------------------------


def readme_section(project: Path, heading: str) -> str:
    text = (project / "README.md").read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def readme_gcloud_lines(text: str) -> list[list[str]]:
    """Every gcloud command in the README's bash blocks, as argv: continuation lines joined,
    comments dropped, `VAR=$(gcloud ...)` and `... | gcloud ...` unwrapped, $BUILD_SA filled in."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"\s+#\s.*$", "", line.strip())
            if match := re.fullmatch(r"\w+=\$\((gcloud .*)\)", line):
                line = match.group(1)
            line = line.rsplit("| ", 1)[-1]
            if line.startswith("gcloud "):
                line = line.replace("$BUILD_SA", BUILD_ACCOUNT)
                commands.append(shlex.split(line)[1:])
    return commands


def test_readme_calls_the_local_service_first(bake_once: Bake) -> None:
    """client_auth=iam: the first commands work against `make run`; the identity token (which
    prints a long error without a deployed service) is marked for the deployed service only."""
    section = readme_section(bake_once(client_auth="iam"), "Call the service")
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert block
    lines = block.group(1).splitlines()
    assert lines[0].startswith("URL=http://127.0.0.1:8080")
    assert lines[1].startswith("AUTH=")
    assert "gcloud" not in lines[1]
    token = next(n for n, line in enumerate(lines) if "print-identity-token" in line)
    assert lines[token].startswith("# ")
    assert "Deployed service only" in lines[token - 2]
    assert all('-H "$AUTH"' in line for line in lines if line.startswith("curl"))


def test_readme_documents_runtime_settings_and_replaced_variables(bake_once: Bake) -> None:
    """The README says that each deploy replaces the service's variables (console edits too)
    and shows --env / DEPLOY_ENV, with keys refused."""
    text = " ".join(readme_section(bake_once(), "Deploy to Cloud Run").split())
    assert "--set-env-vars" in text
    assert "a variable added in the Cloud console is gone after the next deploy" in text
    assert "--env OPENAI_MODEL=gpt-4o" in text
    assert "DEPLOY_ENV=(...)" in text
    assert "`--env OPENAI_API_KEY=...` and `--env CLIENT_API_KEYS=...` are refused" in text


@pytest.mark.parametrize("client_auth", ["iam", "api-key", "none"])
def test_readme_explains_domain_restricted_sharing_for_public_modes(
    bake_once: Bake, client_auth: str
) -> None:
    """api-key and none deploy with --allow-unauthenticated, which an organisation's Domain
    Restricted Sharing policy blocks: the README says so and gives the way out."""
    text = " ".join(
        readme_section(bake_once(client_auth=client_auth), "Deploy to Cloud Run").split()
    )
    public = client_auth != "iam"
    assert ("Domain Restricted Sharing" in text) is public
    assert ("--no-invoker-iam-check" in text) is public
    if public:
        assert "iam.allowedPolicyMemberDomains" in text
        assert "policy exception" in text


@pytest.mark.parametrize("ci_provider", ["cloud-build", "github-actions"])
def test_readme_names_the_build_account_and_its_grants(bake_once: Bake, ci_provider: str) -> None:
    """Remote builds: the README shows how to find the account Cloud Build runs as and grants
    it exactly the roles a build needs; with cloudbuild.yaml also run.admin and
    serviceAccountUser on the runtime account only."""
    project = bake_once(ci_provider=ci_provider)
    deploy = readme_gcloud_lines(readme_section(project, "Deploy to Cloud Run"))
    assert ["builds", "get-default-service-account", "--project=my-gcp-project",
            "--format=value(serviceAccountEmail)"] in deploy  # fmt: skip
    granted = {
        key: flag_value(argv, "role")
        for argv in deploy
        for key in BUILD_GRANTS
        if tuple(argv[: len(key)]) == key and f"--member=serviceAccount:{BUILD_ACCOUNT}" in argv
    }
    assert granted == BUILD_GRANTS
    cicd = readme_gcloud_lines(readme_section(project, "CI/CD"))
    roles = {flag_value(argv, "role"): argv for argv in cicd if any("--role=" in a for a in argv)}
    if ci_provider == "cloud-build":
        assert set(roles) == {"roles/run.admin", "roles/iam.serviceAccountUser"}
        assert roles["roles/iam.serviceAccountUser"][:4] == [
            "iam", "service-accounts", "add-iam-policy-binding",
            "my-service@my-gcp-project.iam.gserviceaccount.com",
        ]  # fmt: skip
    else:
        assert roles == {}


@pytest.mark.gcloud
@pytest.mark.parametrize(
    "answers",
    [{"client_auth": "iam", "ci_provider": "cloud-build"},
     {"client_auth": "api-key", "ci_provider": "github-actions"},
     {"client_auth": "none", "ci_provider": "none"}],
    ids=["iam-cloud-build", "api-key-github-actions", "none-no-ci"],
)  # fmt: skip
def test_readme_gcloud_commands_pass_the_real_parser(
    real_gcloud: str, bake_once: Bake, tmp_path: Path, answers: dict[str, str]
) -> None:
    """Every gcloud command the README tells the user to run parses for real."""
    project = bake_once(**answers)
    lines = readme_gcloud_lines((project / "README.md").read_text())
    assert len(lines) >= 6
    replay_all(real_gcloud, lines, project, tmp_path)


@pytest.mark.gcloud
def test_real_parser_rejects_a_malformed_line(real_gcloud: str, tmp_path: Path) -> None:
    """The replay can fail: a bad startup-probe key is refused before authentication."""
    code, stderr = replay(
        real_gcloud,
        ["run", "deploy", "svc", "--image=x", "--region=us-central1", "--startup-probe=bogus=1"],
        tmp_path,
        tmp_path,
    )
    assert code != 0
    assert NO_ACCOUNT not in stderr
