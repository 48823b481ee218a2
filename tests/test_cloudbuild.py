"""cloudbuild.yaml: tests, then ./deploy.sh itself, so Cloud Build deploys like every other path.

The deploy step is run here as Cloud Build runs it (its entrypoint, args and env, substitutions
filled in) in dry-run mode, and compared with a plain ./deploy.sh dry run; the submit command
passes the real gcloud parser.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Bake
from tests.gcloud_parser import Parses, gcloud_parses  # noqa: F401 (a fixture)
from tests.test_cicd import answers_of

# Builder images Cloud Build can pull: Google's Cloud SDK image and Docker Hub's python images.
KNOWN_BUILDERS = {
    "gcr.io/google.com/cloudsdktool/google-cloud-cli:slim",
    "python:3.13",
    "python:3.12",
    "python:3.11",
}
CLOUD_BUILD_BUILTINS = {"PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION", "SHORT_SHA"}
SUBSTITUTION = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)\}?")


@pytest.fixture(scope="module", params=["iam", "api-key", "none"])
def cloud_build_project(request: pytest.FixtureRequest, bake_once: Bake) -> Path:
    return bake_once(ci_provider="cloud-build", client_auth=request.param)


def cloud_build(project: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((project / "cloudbuild.yaml").read_text())
    return data


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [text for item in items for text in strings_in(item)]


def expand(text: str, values: dict[str, str]) -> str:
    """Cloud Build's substitution of $NAME / ${NAME}."""
    return SUBSTITUTION.sub(lambda m: values[m.group(1)], text)


def test_cloudbuild_tests_then_deploys_on_real_builders(cloud_build_project: Path) -> None:
    """Test, then deploy, on builder images that exist, each waiting only on earlier ids."""
    steps = cloud_build(cloud_build_project)["steps"]
    assert [step["id"] for step in steps] == ["test", "deploy"]
    for index, step in enumerate(steps):
        assert step["name"] in KNOWN_BUILDERS, step["name"]
        earlier = {previous["id"] for previous in steps[:index]}
        assert set(step.get("waitFor", [])) <= earlier, step["id"]
    python = answers_of(cloud_build_project)["python_version"]
    assert steps[0]["name"] == f"python:{python}"
    assert steps[0]["entrypoint"] == "make"
    assert {"lint", "test"} <= set(steps[0]["args"])


def test_the_deploy_step_is_deploy_sh_and_holds_no_copy_of_its_settings(
    cloud_build_project: Path,
) -> None:
    """One source of truth: no gcloud run deploy flags, no answers in the file; every
    substitution is defined, used, and empty by default (deploy.sh's own default)."""
    data = cloud_build(cloud_build_project)
    deploy = data["steps"][-1]
    assert deploy["entrypoint"] == "bash"
    assert "./deploy.sh --build cloud" in " ".join(deploy["args"])
    text = "\n".join(strings_in(data))
    assert "run deploy" not in text
    assert "--set-secrets" not in text
    answers = answers_of(cloud_build_project)
    for answer in ("service_account_id", "secret_name", "artifact_registry_repo", "region"):
        assert answers[answer] not in text, answer
    referenced = {name for text in strings_in(data) for name in SUBSTITUTION.findall(text)}
    user = {name for name in referenced if name.startswith("_")}
    assert user == set(data["substitutions"])
    assert referenced - user <= CLOUD_BUILD_BUILTINS
    assert set(data["substitutions"].values()) == {""}


def dry_run(project: Path, tmp_path: Path, argv: list[str], env: dict[str, str]) -> list[str]:
    """The `gcloud run deploy` argv a deploy.sh dry run prints, without the (time-tagged) image."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "gcloud").write_text("#!/bin/sh\nexit 0\n")  # deploy.sh's preflight looks for it
    (stub / "gcloud").chmod(0o755)
    result = subprocess.run(
        argv,
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", **env},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = (
        line for line in result.stdout.splitlines() if line.startswith("+ gcloud run deploy")
    )
    return [arg for arg in shlex.split(line[2:]) if not arg.startswith("--image=")]


@pytest.mark.parametrize(
    ("substitutions", "expected"),
    [({}, {}), ({"_REGION": "europe-west1"}, {"--region": "europe-west1"})],
    ids=["defaults", "region-override"],
)
def test_the_deploy_step_runs_deploy_sh_as_a_laptop_would(
    cloud_build_project: Path,
    tmp_path: Path,
    substitutions: dict[str, str],
    expected: dict[str, str],
) -> None:
    """The step's command and env, with Cloud Build's substitutions filled in (empty ones
    included), give the same `gcloud run deploy` as ./deploy.sh run by hand with the same
    settings; the project is the build's."""
    data = cloud_build(cloud_build_project)
    project_id = answers_of(cloud_build_project)["gcp_project_id"]
    values = {"PROJECT_ID": project_id, **data["substitutions"], **substitutions}
    step = data["steps"][-1]
    args = [expand(arg, values) for arg in step["args"]]
    env = dict(expand(entry, values).split("=", 1) for entry in step["env"])
    assert env["PROJECT_ID"] == project_id
    args[-1] += " --dry-run"
    from_cloud_build = dry_run(cloud_build_project, tmp_path, [step["entrypoint"], *args], env)
    by_hand = {key: value for key, value in env.items() if value}
    from_laptop = dry_run(
        cloud_build_project, tmp_path, ["bash", "deploy.sh", "--build", "cloud", "--dry-run"],
        by_hand,
    )  # fmt: skip
    assert from_cloud_build == from_laptop
    for name, value in expected.items():
        assert f"{name}={value}" in from_cloud_build


@pytest.mark.gcloud
def test_cloudbuild_submit_passes_the_real_parser(
    cloud_build_project: Path,
    gcloud_parses: Parses,  # noqa: F811 (the fixture imported above)
) -> None:
    project_id = answers_of(cloud_build_project)["gcp_project_id"]
    submit = ["builds", "submit", "--config", "cloudbuild.yaml", "--project", project_id,
              "--substitutions=_REGION=europe-west1,_DEPLOY_ARGS=--canary 10"]  # fmt: skip
    gcloud_parses(submit, cloud_build_project)
