"""deploy.sh refuses what would break a deploy half-way, before anything runs: hostile and
invalid overrides, sizing Cloud Run does not accept, the placeholder project; its bash validators
agree with the template's pre-gen hook.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from hooks import pre_gen_project as hook
from tests.conftest import Bake
from tests.fixtures.deploy import (
    TEST_KEY,
    Sandboxes,
    flag_value,
)

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
    baked: Bake, sandbox: Sandboxes, tmp_path: Path, variable: str, value: str
) -> None:
    """An override that breaks a rule stops the script with the variable named, before any
    gcloud or docker call, and nothing in it is ever executed."""
    marker = tmp_path / "pwned"
    run = sandbox().run(baked(), OPENAI_API_KEY=TEST_KEY, **{variable: value.format(marker=marker)})
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
    baked: Bake, sandbox: Sandboxes, tmp_path: Path, args: list[str]
) -> None:
    """Flags are validated like environment variables (api-key mode checks its second secret)."""
    marker = tmp_path / "pwned"
    run = sandbox().run(
        baked(client_auth="api-key"),
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
        ["acme-prod-42", "abcdef", "a" * 30, "a" * 31, "abcde", "my-google-x", "nullproj1",
         "undefined-1", "my-ssl-proj", "My-project", "1project", "project-", "proj_ect",
         "acme-prod-42\n", "", "projé-1"],
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


def accepted_with_a_warning(function: str, value: str) -> bool:
    """A well-formed region id missing from the snapshot (Google adds regions) passes with a
    warning; the hook does the same (or, before it learnt to, refused it)."""
    return function == "validate_region" and bool(re.fullmatch(r"[a-z]+-[a-z]+[0-9]+", value))


@pytest.mark.parametrize("function", sorted(GOOD_AND_BAD))
def test_bash_validators_agree_with_the_pre_gen_hook(default_project: Path, function: str) -> None:
    """A value in the corpus passes the bash validator exactly when it passes the hook."""
    check, corpus = GOOD_AND_BAD[function]
    expected = [
        check(value) is None or accepted_with_a_warning(function, value) for value in corpus
    ]
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


# --- Sizing and settings Cloud Run does not accept --------------------------------------------

OUT_OF_RANGE = {
    "concurrency-0": (["--concurrency", "0"], "CONCURRENCY (--concurrency)"),
    "concurrency-1001": (["--concurrency=1001"], "from 1 to 1000"),
    "concurrency-word": (["--concurrency", "many"], "CONCURRENCY (--concurrency)"),
    "timeout-0": (["--timeout", "0"], "REQUEST_TIMEOUT_SECONDS (--timeout)"),
    "timeout-3601": (["--timeout=3601"], "from 1 to 3600"),
    "cpu-3": (["--cpu", "3"], "1, 2, 4, 6 or 8"),
    "cpu-0.05": (["--cpu", "0.05", "--concurrency", "1"], "CPU (--cpu)"),
    "cpu-below-1-with-concurrency": (["--cpu", "0.5"], "only with --concurrency 1"),
    "memory-8Gi-on-1-cpu": (["--memory", "8Gi"], "needs at least 2 CPU"),
    "memory-20Gi-on-4-cpu": (["--cpu", "4", "--memory", "20Gi"], "needs at least 6 CPU"),
    "memory-33Gi": (["--cpu", "8", "--memory", "33Gi"], "128Mi to 32Gi"),
    "memory-unit": (["--memory", "512MB"], "written with Mi or Gi"),
    "memory-1Gi-below-half-cpu": (
        ["--cpu", "0.25", "--memory", "1Gi", "--concurrency", "1"],
        "below 1 CPU",
    ),
    "cpu-4-with-1Gi": (["--cpu", "4", "--memory", "1Gi"], "at least 2Gi"),
    "canary-0": (["--canary", "0"], "CANARY (--canary)"),
    "canary-100": (["--canary", "100"], "from 1 to 99"),
    "keep-images-0": (["--keep-images", "0"], "KEEP_IMAGES (--keep-images)"),
    "smoke-url": (["--smoke-url", "ftp://x"], "SMOKE_URL (--smoke-url)"),
}


@pytest.mark.parametrize(("args", "says"), OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_rejects_sizing_cloud_run_refuses_before_running_anything(
    baked: Bake, sandbox: Sandboxes, args: list[str], says: str
) -> None:
    """The gcloud parser takes --concurrency=1001 or --timeout=3601 and the server refuses them
    after the image is built; deploy.sh refuses them first, naming the rule."""
    run = sandbox().run(baked(), *args, OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 1
    assert says in run.stderr
    assert "nothing was run" in run.stderr
    assert run.calls == []


@pytest.mark.parametrize(
    "args",
    [
        ["--concurrency", "1000", "--timeout", "3600", "--cpu", "2", "--memory", "8Gi"],
        ["--concurrency", "1", "--cpu", "0.5", "--memory", "1Gi", "--timeout", "1"],
        ["--cpu", "8", "--memory", "32Gi"],
        ["--cpu", "1", "--memory", "4Gi", "--concurrency", "80"],
    ],
    ids=["limits", "fractional-cpu", "largest", "one-cpu-4gi"],
)
def test_accepts_sizing_at_cloud_runs_limits(
    baked: Bake, sandbox: Sandboxes, args: list[str]
) -> None:
    """Values at the edges of what Cloud Run accepts reach `gcloud run deploy` unchanged, and the
    timeout also reaches the service as REQUEST_TIMEOUT_SECONDS."""
    run = sandbox().run(baked(), *args, OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 0, run.stderr
    deploy = run.call("gcloud", "run", "deploy")["argv"]
    given = dict(zip(args[::2], args[1::2], strict=True))
    for name, value in given.items():
        assert flag_value(deploy, name.removeprefix("--")) == value
    timeout = given.get("--timeout", "300")
    assert f"REQUEST_TIMEOUT_SECONDS={timeout}" in flag_value(deploy, "set-env-vars").split(",")


def test_timeout_cannot_be_set_apart_from_the_service(baked: Bake, sandbox: Sandboxes) -> None:
    """REQUEST_TIMEOUT_SECONDS comes from --timeout only, so the two never disagree."""
    run = sandbox().run(baked(), "--env", "REQUEST_TIMEOUT_SECONDS=10", OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 1
    assert "set by deploy.sh itself from --timeout" in run.stderr
    assert run.calls == []


def test_new_region_is_accepted_with_a_warning(baked: Bake, sandbox: Sandboxes) -> None:
    """A well-formed region id newer than the snapshot is used as given, with a warning."""
    run = sandbox().run(baked(), "--region", "northamerica-south1", OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 0, run.stderr
    assert "northamerica-south1 is not in deploy.sh's list" in run.stderr
    assert flag_value(run.call("gcloud", "run", "deploy")["argv"], "region") == (
        "northamerica-south1"
    )


@pytest.mark.parametrize(
    ("region", "says"),
    [
        (
            "northamerica-south1-a",
            "is a zone; Cloud Run needs a region such as northamerica-south1",
        ),
        ("eu", "is a multi-region"),
        ("nam4", "is a multi-region"),
        ("europe_west1", "is not a Cloud Run region"),
    ],
)
def test_zones_and_multi_regions_are_still_refused(
    baked: Bake, sandbox: Sandboxes, region: str, says: str
) -> None:
    run = sandbox().run(baked(), "--region", region, OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 1
    assert says in run.stderr
    assert run.calls == []


@pytest.mark.parametrize("subcommand", [[], ["promote"], ["status"], ["destroy", "--yes"]])
def test_placeholder_project_is_refused_with_the_flag_to_pass(
    bake_once: Bake, sandbox: Sandboxes, subcommand: list[str]
) -> None:
    """Accepting the defaults leaves gcp_project_id=my-gcp-project, which is nobody's project:
    every subcommand refuses it before any call and names --project; a dry run only warns."""
    project = bake_once()
    run = sandbox().run(project, *subcommand, OPENAI_API_KEY=TEST_KEY)
    assert run.returncode == 1
    assert "my-gcp-project is the template's placeholder project id" in run.stderr
    assert "--project YOUR_PROJECT_ID" in run.stderr
    assert run.calls == []
    dry = sandbox().run(project, *subcommand, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "A real run stops here" in dry.stderr
    passed = sandbox().run(project, "--project", "acme-prod-42", OPENAI_API_KEY=TEST_KEY)
    assert passed.returncode == 0, passed.stderr


# --- Preflight: what can stop a deploy is found before anything changes -------------------------


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "secret openai-api-key does not exist and $OPENAI_API_KEY is not set"),
        ({"OPENAI_API_KEY": "sk-short"}, "$OPENAI_API_KEY is not an API key"),
        ({"OPENAI_API_KEY": "sk-has a space-0123456789"}, "$OPENAI_API_KEY is not an API key"),
        ({"OPENAI_API_KEY": TEST_KEY, "STANDIN_NO_ACCOUNT": "1"}, "Run: gcloud auth login"),
        ({"OPENAI_API_KEY": TEST_KEY, "STANDIN_DENY": "1"}, "PERMISSION_DENIED"),
    ],
    ids=["no-key", "short-key", "key-with-space", "no-account", "describe-denied"],
)
def test_fresh_project_stops_before_any_build_or_change(
    baked: Bake, sandbox: Sandboxes, env: dict[str, str], says: str
) -> None:
    """A fresh project without a usable key (or account, or access) stops in preflight: no API
    enabled, no repository, no build or push, no account, nothing to clean up; the key's value
    is never echoed."""
    box = sandbox()
    # STANDIN_DENY needs a describe to refuse: make the APIs look enabled already.
    apis = "run.googleapis.com artifactregistry.googleapis.com secretmanager.googleapis.com"
    if "STANDIN_DENY" in env:
        (box.state / "state.json").write_text(json.dumps({"apis": apis.split()}))
    run = box.run(baked(), **env)
    assert run.returncode == 1
    assert says in run.stderr
    assert run.changes() == []
    assert run.argvs("docker") == []
    for value in env.values():
        if value.startswith("sk-"):
            assert value not in run.stdout + run.stderr


def test_client_keys_are_checked_before_any_change(baked: Bake, sandbox: Sandboxes) -> None:
    """api-key mode: client keys that are too short to be keys stop the deploy in preflight."""
    run = sandbox().run(
        baked(client_auth="api-key"), OPENAI_API_KEY=TEST_KEY, CLIENT_API_KEYS="abc\n"
    )
    assert run.returncode == 1
    assert "$CLIENT_API_KEYS must hold one key per line" in run.stderr
    assert run.changes() == []
    assert "abc" not in run.stdout
