"""deploy.sh's rollout on an existing service: the new revision is deployed with no traffic under
a fresh tag, smoke-tested through a real HTTP server on 127.0.0.1 (--smoke-url), and only then
gets the traffic (all of it, or --canary PERCENT until ./deploy.sh promote). A failed smoke test
leaves the traffic where it was. The first deploy of a service goes out directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Bake
from tests.fixtures.deploy import (
    CLIENT_KEYS,
    IDENTITY_TOKEN,
    PROJECT,
    TEST_KEY,
    Deploy,
    Sandbox,
    Sandboxes,
    SmokeServer,
    flag_value,
)

FIRST, SECOND, THIRD = (f"my-service-0000{n}-abc" for n in (1, 2, 3))


def deployed(box: Sandbox, project: Path, **env: str) -> Deploy:
    """A first deploy that succeeded (the service then exists with one revision)."""
    run = box.run(project, OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS=CLIENT_KEYS, **env)
    assert run.returncode == 0, run.stderr
    return run


def smoke_hits(server: SmokeServer, since: float) -> list[tuple[str, str, str]]:
    return [(h.mode, h.method, h.path) for h in server.hits if h.time >= since]


def test_first_deploy_goes_out_directly(baked: Bake, sandbox: Sandboxes) -> None:
    """Nothing to protect yet: no --no-traffic (Cloud Run refuses it for a new service), no tag,
    no traffic change; the one revision serves everything."""
    box = sandbox()
    run = deployed(box, baked())
    deploy = run.call("gcloud", "run", "deploy")["argv"]
    assert "--no-traffic" not in deploy
    assert not any(arg.startswith("--tag=") for arg in deploy)
    assert not run.has("gcloud", "run", "services", "update-traffic")
    assert box.serving() == {FIRST: 100}
    assert "first revision is deployed directly" in run.stdout


def test_existing_service_gets_a_tested_candidate_then_all_traffic(
    baked: Bake, sandbox: Sandboxes, smoke_server: SmokeServer
) -> None:
    """Second deploy: `--no-traffic --tag=candidate-...`, the smoke test through the smoke URL
    while the old revision still serves everything, then all traffic to the new revision; the old
    one is tagged `previous` for rollback and the candidate tag is gone."""
    box = sandbox()
    project = baked(client_auth="api-key")
    deployed(box, project)
    run = box.run(project, CLIENT_API_KEYS=CLIENT_KEYS)  # the smoke test's client key
    assert run.returncode == 0, run.stderr
    deploy = run.call("gcloud", "run", "deploy")
    tag = flag_value(deploy["argv"], "tag")
    assert tag.startswith("candidate-")
    assert "--no-traffic" in deploy["argv"]
    migrate = run.call("gcloud", "run", "services", "update-traffic")
    assert "--to-latest" in migrate["argv"]
    assert flag_value(migrate["argv"], "update-tags") == f"previous={FIRST}"
    hits = [h for h in smoke_server.hits if deploy["time"] <= h.time <= migrate["time"]]
    assert [(h.method, h.path) for h in hits] == [
        ("GET", "/ready"),
        ("POST", "/v1/chat"),
        ("GET", "/v1/chat"),
    ]
    assert box.serving() == {SECOND: 100}
    assert box.tags() == {"previous": FIRST}
    assert f"All traffic goes to {SECOND}." in run.stdout


def test_failed_smoke_test_leaves_traffic_where_it_was(baked: Bake, sandbox: Sandboxes) -> None:
    """/ready answers 503: exit 1, no traffic change, the old revision still serves 100 %, and
    the message names the candidate and the command that reads its logs."""
    box = sandbox()
    project = baked()
    deployed(box, project)
    box.smoke_url = box.smoke_url.replace("/healthy", "/broken")
    run = box.run(project)
    assert run.returncode == 1
    assert not run.has("gcloud", "run", "services", "update-traffic")
    assert box.serving() == {FIRST: 100}
    assert "traffic is unchanged" in run.stderr
    assert f'resource.labels.revision_name="{SECOND}"' in run.stderr
    assert "gcloud logging read" in run.stderr
    assert "FAILED: ready (GET /ready answered 503, expected 200)" in run.stderr


def test_api_key_smoke_test_fails_when_v1_is_not_guarded(baked: Bake, sandbox: Sandboxes) -> None:
    """client_auth=api-key: a revision whose /v1 answers a call without a key is not promoted."""
    box = sandbox()
    project = baked(client_auth="api-key")
    deployed(box, project)
    box.smoke_url = box.smoke_url.replace("/healthy", "/unguarded")
    run = box.run(project)
    assert run.returncode == 1
    assert "a /v1 call without a client key is refused" in run.stderr
    assert box.serving() == {FIRST: 100}


def test_api_key_smoke_test_sends_the_client_key_on_stdin_only(
    baked: Bake, sandbox: Sandboxes, smoke_server: SmokeServer
) -> None:
    """The key (first of CLIENT_API_KEYS, or SMOKE_CLIENT_KEY) reaches the revision as a bearer
    header, never in curl's arguments; the unauthenticated /v1 call carries no header at all."""
    box = sandbox()
    project = baked(client_auth="api-key")
    run = deployed(box, project, SMOKE_CLIENT_KEY="smoke-client-key-0123456789")
    start = run.call("gcloud", "run", "deploy")["time"]
    sent = {(h.method, h.path): h.authorization for h in smoke_server.hits if h.time >= start}
    assert sent[("POST", "/v1/chat")] == ""
    assert sent[("GET", "/v1/chat")] == "Bearer smoke-client-key-0123456789"
    for argv in run.argvs("curl"):
        assert not any("smoke-client-key" in arg or "Bearer" in arg for arg in argv)
    assert "smoke-client-key-0123456789" not in run.stdout + run.stderr


def test_iam_smoke_test_uses_an_identity_token(
    baked: Bake, sandbox: Sandboxes, smoke_server: SmokeServer
) -> None:
    """client_auth=iam: against a private revision (403 without the token) the smoke test gets a
    token from `gcloud auth print-identity-token` and sends it; with a service account to
    impersonate, the token is minted for the revision's tagged URL as audience."""
    box = sandbox(smoke="private")
    project = baked(client_auth="iam")
    first = deployed(box, project)
    assert first.call("gcloud", "auth", "print-identity-token")["argv"] == [
        "auth",
        "print-identity-token",
    ]
    ci = "deployer@acme-prod-42.iam.gserviceaccount.com"
    run = box.run(project, SMOKE_IMPERSONATE_SERVICE_ACCOUNT=ci)
    assert run.returncode == 0, run.stderr
    token = run.call("gcloud", "auth", "print-identity-token")["argv"]
    tag = flag_value(run.call("gcloud", "run", "deploy")["argv"], "tag")
    assert flag_value(token, "impersonate-service-account") == ci
    assert flag_value(token, "audiences") == f"https://{tag}---my-service-abc123xyz-uc.a.run.app"
    start = run.call("gcloud", "run", "deploy")["time"]
    ready = [h for h in smoke_server.hits if h.time >= start and h.path == "/ready"]
    assert ready[0].authorization == f"Bearer {IDENTITY_TOKEN}"
    assert all(IDENTITY_TOKEN not in arg for argv in run.argvs("curl") for arg in argv)


def test_canary_leaves_the_split_for_promote(baked: Bake, sandbox: Sandboxes) -> None:
    """--canary 10 gives the tested revision 10 % through its tag and stops there; ./deploy.sh
    promote then sends everything to it and tags the old one `previous`."""
    box = sandbox()
    project = baked()
    deployed(box, project)
    run = box.run(project, "--canary", "10")
    assert run.returncode == 0, run.stderr
    tag = flag_value(run.call("gcloud", "run", "deploy")["argv"], "tag")
    split = run.call("gcloud", "run", "services", "update-traffic")["argv"]
    assert flag_value(split, "to-tags") == f"{tag}=10"
    assert box.serving() == {SECOND: 10, FIRST: 90}
    assert "./deploy.sh promote" in run.stdout
    promote = box.run(project, "promote")
    assert promote.returncode == 0, promote.stderr
    migrate = promote.call("gcloud", "run", "services", "update-traffic")["argv"]
    assert "--to-latest" in migrate
    assert flag_value(migrate, "update-tags") == f"previous={FIRST}"
    assert flag_value(migrate, "remove-tags") == tag
    assert box.serving() == {SECOND: 100}
    assert box.tags() == {"previous": FIRST}


def test_canary_needs_an_existing_service(baked: Bake, sandbox: Sandboxes) -> None:
    """A first deploy has no traffic to split: stop in preflight, nothing created."""
    run = sandbox().run(baked(), "--canary", "10", OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 1
    assert "--canary needs a service that already serves" in run.stderr
    assert run.changes() == []


def test_rollback_returns_traffic_to_the_revision_before_the_last_promote(
    baked: Bake, sandbox: Sandboxes
) -> None:
    """After two rollouts, rollback (no argument) sends 100 % to the revision tagged previous;
    rollback REVISION to the one named."""
    box = sandbox()
    project = baked()
    deployed(box, project)
    assert box.run(project).returncode == 0
    assert box.run(project).returncode == 0
    assert box.serving() == {THIRD: 100}
    back = box.run(project, "rollback")
    assert back.returncode == 0, back.stderr
    target = back.call("gcloud", "run", "services", "update-traffic")["argv"]
    assert flag_value(target, "to-revisions") == f"{SECOND}=100"
    assert box.serving() == {SECOND: 100}
    named = box.run(project, "rollback", FIRST)
    assert named.returncode == 0, named.stderr
    assert box.serving() == {FIRST: 100}


def test_rollback_without_a_previous_revision_says_what_to_pass(
    baked: Bake, sandbox: Sandboxes
) -> None:
    """One revision only: nothing is tagged previous, so rollback stops and names the argument."""
    box = sandbox()
    project = baked()
    deployed(box, project)
    run = box.run(project, "rollback")
    assert run.returncode == 1
    assert "./deploy.sh rollback REVISION" in run.stderr
    assert not run.has("gcloud", "run", "services", "update-traffic")
    bad = box.run(project, "rollback", "$(touch x)")
    assert bad.returncode == 1
    assert "is not a revision name" in bad.stderr
    assert bad.calls == []


def test_revision_that_never_becomes_ready_leaves_traffic_and_points_at_the_logs(
    baked: Bake, sandbox: Sandboxes
) -> None:
    """gcloud run deploy fails (startup probe never passed): no smoke test, no traffic change,
    and the message names the logs command."""
    box = sandbox()
    project = baked()
    deployed(box, project)
    run = box.run(project, STANDIN_REVISION_FAILS="1")
    assert run.returncode == 1
    assert "traffic is unchanged" in run.stderr
    assert "./deploy.sh logs" in run.stderr
    assert run.argvs("curl") == []
    assert not run.has("gcloud", "run", "services", "update-traffic")
    assert box.serving() == {FIRST: 100}


def test_iam_smoke_test_as_a_service_account_names_the_audience(
    baked: Bake, sandbox: Sandboxes
) -> None:
    """CI logged in as a service account (no impersonation): the token is asked for the
    revision's URL as audience, which Cloud Run requires of a service account's token."""
    box = sandbox(smoke="private")
    project = baked(client_auth="iam")
    deployed(box, project)
    run = box.run(project, STANDIN_ACCOUNT="deployer@acme-prod-42.iam.gserviceaccount.com")
    assert run.returncode == 0, run.stderr
    token = run.call("gcloud", "auth", "print-identity-token")["argv"]
    tag = flag_value(run.call("gcloud", "run", "deploy")["argv"], "tag")
    assert token == [
        "auth",
        "print-identity-token",
        f"--audiences=https://{tag}---my-service-abc123xyz-uc.a.run.app",
    ]


def test_smoke_test_calls_the_tag_url_unless_given_one(
    baked: Bake, sandbox: Sandboxes, smoke_server: SmokeServer
) -> None:
    """Without a smoke URL the checks go to the candidate's own tagged run.app URL (unreachable
    here, so the candidate is not promoted); --smoke-url wins over SMOKE_URL."""
    box = sandbox()
    project = baked()
    deployed(box, project)
    unreachable = box.run(project, SMOKE_URL="")
    assert unreachable.returncode == 1
    tag = flag_value(unreachable.call("gcloud", "run", "deploy")["argv"], "tag")
    url = unreachable.argvs("curl")[0][-1]
    assert url == f"https://{tag}---my-service-abc123xyz-uc.a.run.app/ready"
    assert box.serving() == {FIRST: 100}
    given = box.run(project, "--smoke-url", smoke_server.url(), SMOKE_URL="http://127.0.0.1:9/x")
    assert given.returncode == 0, given.stderr
    assert all(argv[-1].startswith(smoke_server.url()) for argv in given.argvs("curl"))


@pytest.mark.parametrize("client_auth", ["iam", "api-key"])
def test_rerun_leaves_a_right_invoker_policy_alone(
    baked: Bake, sandbox: Sandboxes, client_auth: str
) -> None:
    """--[no-]allow-unauthenticated rewrites the service's IAM policy (run.services.setIamPolicy,
    which a CI deployer with run.developer lacks): an existing service whose policy already says
    the same is deployed without either flag; one whose policy changed gets it back."""
    box = sandbox()
    project = baked(client_auth=client_auth)
    deployed(box, project)
    rerun = box.run(project)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.has("gcloud", "run", "services", "get-iam-policy", "my-service")
    deploy = rerun.call("gcloud", "run", "deploy")["argv"]
    assert not {"--allow-unauthenticated", "--no-allow-unauthenticated"} & set(deploy)
    assert "The invoker policy is already right" in rerun.stdout
    state = json.loads((box.state / "state.json").read_text())
    service = state["services"][f"{PROJECT}:us-central1:my-service"]
    service["public"] = client_auth == "iam"  # someone changed it by hand
    (box.state / "state.json").write_text(json.dumps(state))
    fixed = box.run(project)
    assert fixed.returncode == 0, fixed.stderr
    wanted = "--no-allow-unauthenticated" if client_auth == "iam" else "--allow-unauthenticated"
    assert wanted in fixed.call("gcloud", "run", "deploy")["argv"]
    assert box.service()["public"] is (client_auth != "iam")
