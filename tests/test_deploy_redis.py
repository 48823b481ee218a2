"""deploy.sh with shared limits, end to end through the real scripts/memorystore.sh: --memorystore
NAME (Memorystore for Redis, created if missing) and --redis-url-secret NAME (a Redis the user
runs), dry run, first run and rerun, with the recording stand-ins, and every gcloud line that ran
or was printed replayed through the real gcloud parser.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Bake
from tests.fixtures import memorystore_standin
from tests.fixtures.deploy import (
    TEST_KEY,
    Deploy,
    Sandbox,
    Sandboxes,
    flag_value,
    printed_commands,
    replay_all,
    replayable,
)

REDIS_SECRETS = ("my-service-redis-url", "my-service-redis-ca")
CA_PATH = "/secrets/redis-ca/ca.pem"
VPC_FLAGS = ["--network=vpc-1", "--subnet=sub-1", "--vpc-egress=private-ranges-only"]
OWN_REDIS_URL = "rediss://:secret@10.1.2.3:6379"
MODES = {
    "memorystore": ["--memorystore", "limits", "--network", "vpc-1", "--subnet", "sub-1"],
    "redis-url-secret": ["--redis-url-secret", "my-redis-url"],
}


def own_redis_secret(box: Sandbox) -> None:
    """The user's own Redis URL, in a secret made before the deploy (as the README says)."""
    state = memorystore_standin.State(box.state / "memorystore")
    state.path("secrets", "my-redis-url").mkdir(parents=True)
    state.add_version("my-redis-url", OWN_REDIS_URL)


def deploy_line(run: Deploy) -> list[str]:
    assert run.returncode == 0, run.stderr
    return run.call("gcloud", "run", "deploy")["argv"]


@pytest.mark.gcloud
@pytest.mark.parametrize("mode", list(MODES))
def test_shared_limits_deploy_end_to_end(
    baked: Bake, sandbox: Sandboxes, real_gcloud: str, tmp_path: Path, mode: str
) -> None:
    """Dry run: nothing runs, the commands a fresh project needs are printed. First run: the
    instance and its two secrets are made (values on stdin only), the runtime account may read
    them, and the one deploy line carries the Redis URL (and, with Memorystore, the CA mount,
    REDIS_CA_FILE and Direct VPC egress to private ranges only). Rerun: nothing is created,
    no secret version added, the same deploy line."""
    project = baked(client_auth="none")
    box = sandbox()
    if mode == "redis-url-secret":
        own_redis_secret(box)
    dry = box.run(project, "--dry-run", *MODES[mode], OPENAI_API_KEY=TEST_KEY)
    assert dry.returncode == 0, dry.stderr
    assert dry.changes() == []
    dry_lines = [argv[1:] for argv in printed_commands(dry.stdout) if argv[0] == "gcloud"]

    first = box.run(project, *MODES[mode], OPENAI_API_KEY=TEST_KEY)
    deploy = deploy_line(first)
    assert "[11/11]" in first.stdout
    assert "[12/" not in first.stdout
    assert first.stdout.index("Preflight passed.") < first.stdout.index("[2/11]")
    secrets = flag_value(deploy, "set-secrets").split(",")
    env_vars = flag_value(deploy, "set-env-vars").split(",")
    assert deploy.count(f"--set-secrets={','.join(secrets)}") == 1
    if mode == "memorystore":
        assert first.has("gcloud", "redis", "instances", "create", "limits")
        assert ["redis", "instances", "create", "limits"] in [a[:4] for a in dry_lines]
        created = [a[2] for a in first.argvs() if a[:2] == ["secrets", "create"]]
        assert set(REDIS_SECRETS) <= set(created)
        for secret in REDIS_SECRETS:
            call = first.call("gcloud", "secrets", "create", secret)
            assert call["stdin"]["bytes"] > 0
        assert "REDIS_URL=my-service-redis-url:latest" in secrets
        assert f"{CA_PATH}=my-service-redis-ca:latest" in secrets
        assert f"REDIS_CA_FILE={CA_PATH}" in env_vars
        assert all(flag in deploy for flag in VPC_FLAGS)
        assert "rediss://" not in first.stdout + first.stderr  # the URL holds the AUTH string
    else:
        assert not first.has("gcloud", "redis")
        assert "REDIS_URL=my-redis-url:latest" in secrets
        assert not any(arg.startswith("--network") for arg in deploy)
        assert OWN_REDIS_URL not in first.stdout + first.stderr
    redis_state = memorystore_standin.State(box.state / "memorystore")
    url_secret = "my-service-redis-url" if mode == "memorystore" else "my-redis-url"
    bindings = [p.read_text() for p in redis_state.path("secrets", url_secret).glob("binding*")]
    member = flag_value(deploy, "service-account")
    assert bindings == [f"roles/secretmanager.secretAccessor serviceAccount:{member}"]

    rerun = box.run(project, *MODES[mode])
    again = deploy_line(rerun)
    for name in ("set-secrets", "set-env-vars"):
        assert flag_value(again, name) == flag_value(deploy, name)
    assert [a for a in again if a.startswith(("--network", "--subnet", "--vpc-egress"))] == [
        a for a in deploy if a.startswith(("--network", "--subnet", "--vpc-egress"))
    ]
    assert rerun.creates() == []
    assert not rerun.has("gcloud", "secrets", "versions", "add")
    assert not rerun.has("gcloud", "secrets", "add-iam-policy-binding")

    lines = replayable([*first.calls, *rerun.calls], tmp_path)
    # The dry run's policy file is gone; the real run's line with a copy of it is replayed.
    # Other printed lines may differ from the real run's (the image tag's clock second).
    printed = [
        a for a in dry_lines if a not in lines and not any(x.startswith("--policy=") for x in a)
    ]
    replay_all(real_gcloud, [*lines, *printed], project, tmp_path)


def test_without_shared_limits_no_redis_is_touched(baked: Bake, sandbox: Sandboxes) -> None:
    run = sandbox().run(baked(), OPENAI_API_KEY=TEST_KEY)
    deploy = deploy_line(run)
    assert not any("redis" in arg for argv in run.argvs() for arg in argv if argv != deploy)
    assert "REDIS" not in flag_value(deploy, "set-secrets") + flag_value(deploy, "set-env-vars")
    assert "[1/10]" in run.stdout
    assert "[11/" not in run.stdout
