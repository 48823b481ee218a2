"""deploy.sh's default subcommand end to end against recording stand-ins: what a fresh project
gets and in which order, builds, client_auth modes, secrets on stdin, preflight stops.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import Bake
from tests.fixtures.deploy import (
    BUILD_ACCOUNT,
    BUILD_GRANTS,
    CLIENT_KEYS,
    TEST_KEY,
    Sandboxes,
    flag_value,
    printed_commands,
    printed_gcloud_lines,
    replay_all,
    sha256,
)


def test_fresh_project_checks_everything_first_then_creates_in_order(
    baked: Bake, sandbox: Sandboxes
) -> None:
    """Nothing exists: preflight only reads (account, project, enabled APIs); then APIs, repo and
    its cleanup policy, image, account, secret and binding come before the deploy, in order, each
    create after its describe; the first revision is deployed directly and smoke-tested, and every
    step is numbered."""
    run = sandbox().run(baked(), OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 0, run.stderr
    order = [
        ("gcloud", "auth", "list"),
        ("gcloud", "projects", "describe"),
        ("gcloud", "services", "list"),
        ("gcloud", "services", "enable"),
        ("gcloud", "artifacts", "repositories", "describe"),
        ("gcloud", "artifacts", "repositories", "create"),
        ("gcloud", "artifacts", "repositories", "set-cleanup-policies"),
        ("docker", "build"),
        ("gcloud", "auth", "configure-docker"),
        ("docker", "push"),
        ("gcloud", "iam", "service-accounts", "describe"),
        ("gcloud", "iam", "service-accounts", "create"),
        ("gcloud", "secrets", "create"),
        ("gcloud", "secrets", "get-iam-policy"),
        ("gcloud", "secrets", "add-iam-policy-binding"),
        ("gcloud", "run", "deploy"),
        ("curl",),
    ]
    positions = [run.index(*call) for call in order]
    assert positions == sorted(positions)
    assert run.changes()[0][:3] == ["gcloud", "services", "enable"]
    deploy = run.call("gcloud", "run", "deploy")["argv"]
    assert "--no-traffic" not in deploy
    assert not run.has("gcloud", "run", "services", "update-traffic")
    steps = re.findall(r"^\[(\d+)/(\d+)\] ", run.stdout, flags=re.MULTILINE)
    assert steps == [(str(n), "10") for n in range(1, 11)]
    assert "Deployed: https://my-service-abc123xyz-uc.a.run.app" in run.stdout
    image = flag_value(deploy, "image")
    assert re.fullmatch(
        r"us-central1-docker\.pkg\.dev/acme-prod-42/cloud-run/my-service:\S+", image
    )
    assert run.call("docker", "push")["argv"] == ["push", image]


def test_secret_is_created_from_stdin_and_bound_on_that_secret_only(
    baked: Bake, sandbox: Sandboxes
) -> None:
    """The key reaches `secrets create` on stdin, and the accessor role is granted on the secret
    itself, to the runtime account, never on the project."""
    run = sandbox().run(baked(), OPENAI_API_KEY=TEST_KEY)
    create = run.call("gcloud", "secrets", "create")
    assert "--data-file=-" in create["argv"]
    assert create["stdin"] == {"bytes": len(TEST_KEY), "sha256": sha256(TEST_KEY)}
    binding = run.call("gcloud", "secrets", "add-iam-policy-binding")["argv"]
    assert binding[:3] == ["secrets", "add-iam-policy-binding", "openai-api-key"]
    assert flag_value(binding, "role") == "roles/secretmanager.secretAccessor"
    assert flag_value(binding, "member") == (
        "serviceAccount:my-service@acme-prod-42.iam.gserviceaccount.com"
    )
    assert not any(argv[:2] == ["projects", "add-iam-policy-binding"] for argv in run.argvs())


def test_rerun_creates_nothing_and_changes_no_policy(baked: Bake, sandbox: Sandboxes) -> None:
    """Everything exists on the second run: no create, no `services enable` (the APIs are on), no
    IAM change (the binding is in the policy), no cleanup policy change, no key needed; only the
    new revision and its traffic change, so a deployer without admin roles can run it."""
    box = sandbox()
    assert box.run(baked(), OPENAI_API_KEY=TEST_KEY).returncode == 0
    rerun = box.run(baked())
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.creates() == []
    changes = [argv[1:4] for argv in rerun.changes() if argv[0] == "gcloud"]
    assert changes == [
        ["auth", "configure-docker", "us-central1-docker.pkg.dev"],
        ["run", "deploy", "my-service"],
        ["run", "services", "update-traffic"],
    ]
    assert rerun.index("gcloud", "secrets", "versions", "describe") < rerun.index(
        "gcloud", "run", "deploy"
    )
    assert "Secret openai-api-key exists." in rerun.stdout
    assert "APIs already enabled" in rerun.stdout
    assert "has roles/secretmanager.secretAccessor on secret openai-api-key." in rerun.stdout


def test_stops_before_deploying_without_secret_or_key(baked: Bake, sandbox: Sandboxes) -> None:
    """No secret and no OPENAI_API_KEY: stop before the deploy and say how to create it safely."""
    run = sandbox().run(baked())
    assert run.returncode == 1
    assert "secret openai-api-key does not exist and $OPENAI_API_KEY is not set" in run.stderr
    assert "--data-file=-" in run.stderr
    assert not any(argv[:2] in (["secrets", "create"], ["run", "deploy"]) for argv in run.argvs())


def test_builds_remotely_when_docker_is_missing(baked: Bake, sandbox: Sandboxes) -> None:
    """Without docker on PATH the image is built by Cloud Build (API enabled), and the script
    says so."""
    run = sandbox(docker=False).run(baked(), OPENAI_API_KEY=TEST_KEY)
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


@pytest.mark.gcloud
def test_remote_build_in_ci_waits_without_streaming_the_log(
    baked: Bake, sandbox: Sandboxes, real_gcloud: str, tmp_path: Path
) -> None:
    """Streaming a build's log needs project Viewer, which the CI deployer lacks: under CI
    (GitHub Actions and cloudbuild.yaml set CI=true) `builds submit` gets --suppress-logs, which
    the real gcloud parser accepts; from a laptop the log streams as before."""
    box = sandbox(docker=False)
    laptop = box.run(baked(), OPENAI_API_KEY=TEST_KEY)
    ci = box.run(baked(), CI="true")
    assert laptop.returncode == 0, laptop.stderr
    assert ci.returncode == 0, ci.stderr
    assert "--suppress-logs" not in laptop.call("gcloud", "builds", "submit")["argv"]
    submit = ci.call("gcloud", "builds", "submit")["argv"]
    assert "--suppress-logs" in submit
    replay_all(real_gcloud, [submit], baked(), tmp_path)


def test_remote_build_names_the_account_that_builds(baked: Bake, sandbox: Sandboxes) -> None:
    """--build cloud looks up Cloud Build's default service account and says which it is."""
    run = sandbox(docker=False).run(baked(), OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 0, run.stderr
    lookup = run.call("gcloud", "builds", "get-default-service-account")["argv"]
    assert flag_value(lookup, "project") == "acme-prod-42"
    assert run.index("gcloud", "builds", "get-default-service-account") < run.index(
        "gcloud", "builds", "submit"
    )
    assert f"Cloud Build builds as {BUILD_ACCOUNT}." in run.stdout


def test_failed_remote_build_prints_the_grants_its_account_needs(
    baked: Bake, sandbox: Sandboxes
) -> None:
    """Projects made since 2024 build as the Compute Engine default account, often without the
    roles a build needs: a failed build stops before the deploy and prints, for that account, the
    exact grants (image repository, build log, uploaded source)."""
    run = sandbox(docker=False).run(
        baked(), "--region=europe-west1", OPENAI_API_KEY=TEST_KEY, STANDIN_BUILD_FAILS="1"
    )
    assert run.returncode == 1
    assert "the Cloud Build build failed" in run.stderr
    assert "gcloud builds get-default-service-account --project=acme-prod-42" in run.stderr
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
    assert bucket_grant[3] == "gs://acme-prod-42_cloudbuild"


@pytest.mark.parametrize(
    ("ci_provider", "enabled"), [("cloud-build", True), ("github-actions", False), ("none", False)]
)
def test_cloud_build_api_is_enabled_for_cloudbuild_yaml_even_after_a_local_build(
    baked: Bake, sandbox: Sandboxes, ci_provider: str, enabled: bool
) -> None:
    """With ci_provider=cloud-build the next step is `gcloud builds submit --config
    cloudbuild.yaml`, so the Cloud Build API is enabled even when docker built the image."""
    run = sandbox().run(baked(ci_provider=ci_provider), OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 0, run.stderr
    assert run.argvs("docker")  # built locally
    apis = run.call("gcloud", "services", "enable")["argv"]
    assert ("cloudbuild.googleapis.com" in apis) is enabled


def test_local_build_without_docker_says_what_to_do(baked: Bake, sandbox: Sandboxes) -> None:
    """--build local with no docker stops in preflight, pointing at Docker and --build cloud."""
    run = sandbox(docker=False).run(baked(), "--build", "local", OPENAI_API_KEY=TEST_KEY)
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
    baked: Bake, sandbox: Sandboxes, buildx: str, build_argv: list[str]
) -> None:
    """Cloud Run needs linux/amd64: buildx when it exists, else plain docker build."""
    run = sandbox().run(baked(), OPENAI_API_KEY=TEST_KEY, STANDIN_BUILDX=buildx)
    assert run.returncode == 0, run.stderr
    builds = [argv for argv in run.argvs("docker") if "--platform=linux/amd64" in argv]
    assert len(builds) == 1
    assert builds[0][: len(build_argv)] == build_argv


@pytest.mark.parametrize("client_auth", ["iam", "api-key", "none"])
def test_deploy_flags_match_client_auth_mode(
    baked: Bake, sandbox: Sandboxes, client_auth: str
) -> None:
    """Every mode gets the probe, cpu boost, labels, explicit sizing and timeout (the timeout also
    as REQUEST_TIMEOUT_SECONDS for the service), the OpenAI key as a mounted file and the project
    (for log trace ids); iam is private, api-key and none are public; api-key also mounts the
    client keys secret as a file, in a directory of its own."""
    run = sandbox().run(
        baked(client_auth=client_auth), OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS=CLIENT_KEYS
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
    assert [flag_value(deploy, name) for name in ("concurrency", "cpu", "memory", "timeout")] == [
        "50", "1", "512Mi", "300",
    ]  # fmt: skip
    secrets = flag_value(deploy, "set-secrets").split(",")
    assert secrets[0] == "/secrets/openai/key=openai-api-key:latest"
    own = [
        "GOOGLE_CLOUD_PROJECT=acme-prod-42",
        "OPENAI_API_KEY_FILE=/secrets/openai/key",
        "REQUEST_TIMEOUT_SECONDS=300",
    ]
    bound = [argv[2] for argv in run.argvs() if argv[1:2] == ["add-iam-policy-binding"]]
    if client_auth == "api-key":
        assert secrets[1:] == ["/secrets/client-api-keys/keys=my-service-client-api-keys:latest"]
        assert flag_value(deploy, "set-env-vars").split(",") == [
            *own,
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
        assert flag_value(deploy, "set-env-vars").split(",") == own
        assert bound == ["openai-api-key"]


def test_private_service_output_says_how_to_call_it(baked: Bake, sandbox: Sandboxes) -> None:
    """client_auth=iam: the URL comes with an identity-token curl, the proxy, the invoker role."""
    run = sandbox().run(baked(client_auth="iam"), OPENAI_API_KEY=TEST_KEY)
    assert "gcloud auth print-identity-token" in run.stdout
    assert "gcloud run services proxy my-service --region=us-central1" in run.stdout
    assert "--role=roles/run.invoker" in run.stdout


def test_open_service_warns_about_the_cost_ceiling(baked: Bake, sandbox: Sandboxes) -> None:
    """client_auth=none: a warning names the risk (anyone spends the budget) and the ceiling."""
    run = sandbox().run(baked(client_auth="none"), "--max-instances", "3", OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 0, run.stderr
    assert "WARNING: client_auth=none" in run.stderr
    assert "can spend your OpenAI budget" in " ".join(run.stderr.split())
    assert "--max-instances=3" in run.stderr


def test_api_key_mode_stops_without_client_keys(baked: Bake, sandbox: Sandboxes) -> None:
    """api-key mode with no client keys secret and no CLIENT_API_KEYS: stop, say how to make one."""
    run = sandbox().run(baked(client_auth="api-key"), OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 1
    assert "my-service-client-api-keys does not exist and $CLIENT_API_KEYS is not set" in run.stderr
    assert "openssl rand -hex 32" in run.stderr
    assert not any(argv[:2] == ["run", "deploy"] for argv in run.argvs())


def test_secret_values_never_appear_in_argv_or_output(baked: Bake, sandbox: Sandboxes) -> None:
    """The OpenAI key and the client keys travel on stdin only: not in any recorded argv or
    child environment, not in stdout or stderr, and the stand-in's log holds digests, not values."""
    box = sandbox()
    run = box.run(
        baked(client_auth="api-key"), OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS=CLIENT_KEYS
    )
    assert run.returncode == 0, run.stderr
    dry = box.run(baked(client_auth="api-key"), "--dry-run", OPENAI_API_KEY=TEST_KEY)
    assert [c["stdin"]["bytes"] for c in run.calls if "stdin" in c] == [
        len(TEST_KEY),
        len(CLIENT_KEYS),
    ]
    assert [call["secret_env"] for call in run.calls] == [[]] * len(run.calls)
    for secret in (TEST_KEY, *CLIENT_KEYS.split()):
        for text in (run.stdout, run.stderr, dry.stdout, dry.stderr, box.log.read_text()):
            assert secret not in text


def test_no_active_account_stops_in_preflight(baked: Bake, sandbox: Sandboxes) -> None:
    """Nobody logged in: stop after `gcloud auth list` and say which command fixes it."""
    run = sandbox().run(baked(), OPENAI_API_KEY=TEST_KEY, STANDIN_NO_ACCOUNT="1")
    assert run.returncode == 1
    assert "Run: gcloud auth login" in run.stderr
    assert run.argvs() == [["auth", "list", "--filter=status:ACTIVE", "--format=value(account)"]]


def test_describe_errors_other_than_not_found_stop_the_script(
    baked: Bake, sandbox: Sandboxes
) -> None:
    """A PERMISSION_DENIED describe is not taken for "missing": no create follows it."""
    run = sandbox().run(baked(), OPENAI_API_KEY=TEST_KEY, STANDIN_DENY="1")
    assert run.returncode == 1
    assert "PERMISSION_DENIED" in run.stderr
    assert run.creates() == []


def test_binding_waits_for_a_new_service_account(baked: Bake, sandbox: Sandboxes) -> None:
    """IAM may refuse a just-created account as INVALID_ARGUMENT: the binding is retried, and the
    deploy only runs once it succeeded."""
    run = sandbox().run(baked(), OPENAI_API_KEY=TEST_KEY, STANDIN_NEW_ACCOUNT_LAG="1")
    assert run.returncode == 0, run.stderr
    bindings = [c for c in run.argvs() if c[:2] == ["secrets", "add-iam-policy-binding"]]
    assert len(bindings) == 2
    assert "not visible to IAM yet; retrying in 5 s" in run.stdout


def heads(commands: list[list[str]]) -> list[tuple[str, ...]]:
    """Each command's tool and leading words, without flags, and with the time in image tags
    (which differs between two runs) blanked."""
    return [
        tuple(re.sub(r"\d{8}-\d{6}", "TIME", w) for w in argv if not w.startswith("-"))[:4]
        for argv in commands
    ]


@pytest.mark.parametrize("client_auth", ["api-key", "iam"])
def test_every_command_is_printed_and_the_dry_run_shows_the_same_order(
    baked: Bake, sandbox: Sandboxes, client_auth: str
) -> None:
    """A real run prints each command before it runs it (exactly the calls the stand-ins saw,
    but docker's buildx probe), and a dry run of a fresh project prints the same commands in the
    same order (plus the describes a fresh project has no API for yet)."""
    project = baked(client_auth=client_auth)
    dry = sandbox().run(project, "--dry-run", OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS=CLIENT_KEYS)
    real = sandbox().run(project, OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS=CLIENT_KEYS)
    assert dry.returncode == 0, dry.stderr
    assert real.returncode == 0, real.stderr
    ran = [[c["tool"], *c["argv"]] for c in real.calls if c["argv"][:2] != ["buildx", "version"]]
    printed = printed_commands(real.stdout)
    assert [argv[0] for argv in printed] == [argv[0] for argv in ran]
    assert heads(printed) == heads(ran)
    shown = iter(heads(printed_commands(dry.stdout)))
    assert all(head in shown for head in heads(ran)), "the dry run's order differs"


def test_a_deployer_that_cannot_list_apis_assumes_they_are_on(
    baked: Bake, sandbox: Sandboxes
) -> None:
    """Least privilege: without serviceusage.services.list the deploy warns, enables nothing
    (which would need an admin role) and goes on."""
    run = sandbox().run(baked(), OPENAI_API_KEY=TEST_KEY, STANDIN_NO_SERVICE_LIST="1")
    assert run.returncode == 0, run.stderr
    assert "could not list the enabled APIs" in run.stderr
    assert not run.has("gcloud", "services", "enable")
