"""deploy.sh's day-two subcommands against the recording stand-ins: status, logs, destroy (with
its confirmation, its dry run, and a rerun that deletes nothing), each with --dry-run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Bake
from tests.fixtures.deploy import (
    CLIENT_KEYS,
    TEST_KEY,
    Deploy,
    Sandbox,
    Sandboxes,
    flag_value,
)


def deployed_twice(box: Sandbox, project: Path) -> None:
    """A service with two revisions (the second rolled out), its secrets, account and image."""
    for _ in range(2):
        run = box.run(project, OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS=CLIENT_KEYS)
        assert run.returncode == 0, run.stderr


def state(box: Sandbox) -> dict[str, object]:
    return json.loads((box.state / "state.json").read_text())


def test_status_shows_url_traffic_tags_image_and_instances(baked: Bake, sandbox: Sandboxes) -> None:
    """status reads only, and prints the URL, each traffic target with its tag, the latest
    revision's image and min/max instances, and the revision list."""
    box = sandbox()
    project = baked()
    deployed_twice(box, project)
    run = box.run(project, "status")
    assert run.returncode == 0, run.stderr
    assert run.changes() == []
    assert "URL: https://my-service-abc123xyz-uc.a.run.app" in run.stdout
    assert " 100%  my-service-00002-abc" in run.stdout
    assert "tag previous: https://previous---my-service-abc123xyz-uc.a.run.app" in run.stdout
    image = flag_value(run_deploy_argv(box), "image")
    assert f"Image: {image}" in run.stdout
    assert "Instances: min 0, max 5" in run.stdout
    assert run.has("gcloud", "run", "revisions", "list", "--service=my-service")


def run_deploy_argv(box: Sandbox) -> list[str]:
    calls = [json.loads(line) for line in box.log.read_text().splitlines()]
    return [c["argv"] for c in calls if c["argv"][:2] == ["run", "deploy"]][-1]


@pytest.mark.parametrize(
    ("args", "command"),
    [
        ([], ["run", "services", "logs", "read", "my-service", "--region=us-central1",
              "--project=acme-prod-42", "--limit=50"]),
        (["--limit", "200"], ["run", "services", "logs", "read", "my-service",
                              "--region=us-central1", "--project=acme-prod-42", "--limit=200"]),
        (["--tail"], ["beta", "run", "services", "logs", "tail", "my-service",
                      "--region=us-central1", "--project=acme-prod-42"]),
    ],
    ids=["read", "limit", "tail"],
)  # fmt: skip
def test_logs_reads_or_tails_the_service_logs(
    baked: Bake, sandbox: Sandboxes, args: list[str], command: list[str]
) -> None:
    """logs reads the latest lines; --tail follows them with the beta command and says that it
    needs the beta component and the log-streaming package."""
    run = sandbox().run(baked(), "logs", *args)
    assert run.returncode == 0, run.stderr
    assert run.argvs() == [command]
    assert ("log-streaming" in run.stderr) is ("--tail" in args)


def test_logs_refuses_a_bad_limit(baked: Bake, sandbox: Sandboxes) -> None:
    run = sandbox().run(baked(), "logs", "--limit", "1;id")
    assert run.returncode == 1
    assert "--limit" in run.stderr
    assert run.calls == []


def test_destroy_without_a_terminal_refuses_unless_yes(baked: Bake, sandbox: Sandboxes) -> None:
    """stdin is not a TTY and no --yes: nothing is looked up or deleted, and the message says
    to pass --yes."""
    box = sandbox()
    project = baked()
    deployed_twice(box, project)
    before = state(box)
    run = box.run(project, "destroy")
    assert run.returncode == 1
    assert "stdin is not a terminal" in run.stderr
    assert "--yes" in run.stderr
    assert run.calls == []
    assert state(box) == before


def destroy_with_terminal(box: Sandbox, project: Path, answer: str) -> Deploy:
    """Run destroy with a pseudo-terminal as stdin and ANSWER typed at the prompt."""
    primary, secondary = os.openpty()
    os.write(primary, answer.encode() + b"\n")
    try:
        return box.run(project, "destroy", stdin=secondary)
    finally:
        os.close(primary)
        os.close(secondary)


def test_destroy_asks_for_the_service_name(baked: Bake, sandbox: Sandboxes) -> None:
    """At a terminal, a wrong answer deletes nothing; the service name deletes the service."""
    box = sandbox()
    project = baked()
    deployed_twice(box, project)
    wrong = destroy_with_terminal(box, project, "my-servic")
    assert wrong.returncode == 1
    assert "nothing was deleted" in wrong.stderr
    assert wrong.calls == []
    right = destroy_with_terminal(box, project, "my-service")
    assert right.returncode == 0, right.stderr
    assert right.has("gcloud", "run", "services", "delete", "my-service")


def test_destroy_deletes_service_bindings_account_and_images_but_keeps_secrets(
    baked: Bake, sandbox: Sandboxes
) -> None:
    """--yes: the service, the runtime account's access to each secret, the account and the
    service's images are deleted; the secrets and the repository stay; a second run finds
    nothing left to delete and changes nothing."""
    box = sandbox()
    project = baked(client_auth="api-key")
    deployed_twice(box, project)
    run = box.run(project, "destroy", "--yes")
    assert run.returncode == 0, run.stderr
    deletes = [argv[:4] for argv in run.changes()]
    assert deletes == [
        ["gcloud", "run", "services", "delete"],
        ["gcloud", "secrets", "remove-iam-policy-binding", "openai-api-key"],
        ["gcloud", "secrets", "remove-iam-policy-binding", "my-service-client-api-keys"],
        ["gcloud", "iam", "service-accounts", "delete"],
        ["gcloud", "artifacts", "packages", "delete"],
    ]
    left = state(box)
    assert left["services"] == {}
    assert left["bindings"] == []
    resources = set(left["resources"])  # type: ignore[call-overload]
    assert {"secret:acme-prod-42:openai-api-key", "repo:acme-prod-42:us-central1:cloud-run"} <= (
        resources
    )
    assert not any(key.startswith(("sa:", "package:")) for key in resources)
    assert "Kept openai-api-key" in run.stdout
    again = box.run(project, "destroy", "--yes")
    assert again.returncode == 0, again.stderr
    assert again.changes() == []


def test_destroy_deletes_secrets_only_when_asked(baked: Bake, sandbox: Sandboxes) -> None:
    """--delete-secrets deletes both secrets (their bindings go with them)."""
    box = sandbox()
    project = baked(client_auth="api-key")
    deployed_twice(box, project)
    run = box.run(project, "destroy", "--yes", "--delete-secrets")
    assert run.returncode == 0, run.stderr
    deleted = [argv[3] for argv in run.changes() if argv[1:3] == ["secrets", "delete"]]
    assert deleted == ["openai-api-key", "my-service-client-api-keys"]
    assert not run.has("gcloud", "secrets", "remove-iam-policy-binding")
    assert not any(key.startswith("secret:") for key in state(box)["resources"])  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "subcommand",
    [["destroy", "--delete-secrets"], ["promote"], ["rollback"], ["status"], ["logs"], []],
    ids=["destroy", "promote", "rollback", "status", "logs", "rollout"],
)
def test_dry_run_of_every_subcommand_changes_nothing(
    baked: Bake, sandbox: Sandboxes, subcommand: list[str]
) -> None:
    """--dry-run (no prompt, even without a terminal) calls no gcloud at all and leaves the
    project as it was, while printing the commands a real run would make, in order."""
    box = sandbox()
    project = baked()
    deployed_twice(box, project)
    before = state(box)
    run = box.run(project, *subcommand, "--dry-run")
    assert run.returncode == 0, run.stderr
    assert run.argvs("gcloud") == []
    assert state(box) == before
    printed = [line for line in run.stdout.splitlines() if line.startswith("+ gcloud ")]
    assert printed
    if subcommand[:1] == ["destroy"]:
        verbs = [line.split()[2:5] for line in printed if " delete " in line]
        assert [verb[:2] for verb in verbs] == [
            ["run", "services"], ["iam", "service-accounts"], ["artifacts", "packages"],
            ["secrets", "delete"],
        ]  # fmt: skip
