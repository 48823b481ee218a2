"""The hooks as units: each validator's rule; the hooks rendered and run as cookiecutter does."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.environment import StrictEnvironment

from hooks import post_gen_project, pre_gen_project

HOOKS = Path(__file__).resolve().parent.parent / "hooks"
DEFAULTS = json.loads((HOOKS.parent / "cookiecutter.json").read_text())


def default_answers(**overrides: Any) -> dict[str, Any]:
    answers = {key: value for key, value in DEFAULTS.items() if not key.startswith("_")}
    answers = {k: v[0] if isinstance(v, list) else v for k, v in answers.items()}
    answers["service_account_id"] = "my-service"
    answers.update(overrides)
    return answers


def test_defaults_are_valid() -> None:
    """The answers cookiecutter.json offers by default pass every validator."""
    assert pre_gen_project.validate(default_answers()) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("service_name", "a"),
        ("service_name", "a" * 49),
        ("service_name", "api-v2"),
        ("gcp_project_id", "abcdef"),
        ("gcp_project_id", "a" * 30),
        ("gcp_project_id", "prod-123-eu"),
        ("service_account_id", "runner"),
        ("service_account_id", "a" * 30),
        ("secret_name", "A_b-9"),
        ("secret_name", "s" * 255),
        ("artifact_registry_repo", "c"),
        ("artifact_registry_repo", "docker-images"),
        ("region", "asia-northeast3"),
        ("region", "europe-west12"),
        ("openai_model", "ft:gpt-4o-mini:org:custom:abc123"),
        ("openai_model", "meta-llama/Llama-3.1-8B"),
        ("description", "Bob's chat API (internal)"),
        ("python_version", "3.11"),
        ("client_auth", "none"),
        ("ci_provider", "cloud-build"),
        ("openai_api", "chat-completions"),
    ],
)
def test_accepts_valid_value(key: str, value: str) -> None:
    """Values at the edges of each rule are still accepted."""
    assert pre_gen_project.validate(default_answers(**{key: value})) == []


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("service_name", "My-Service", "lowercase"),
        ("service_name", "1service", "start with a lowercase letter"),
        ("service_name", "service-", "hyphen"),
        ("service_name", "a" * 50, "49 characters"),
        ("service_name", "my_service", "e.g. my-service"),
        ("service_name", "my-service\n", "not a Cloud Run service name"),
        ("gcp_project_id", "short", "6-30 characters"),
        ("gcp_project_id", "a" * 31, "6-30 characters"),
        ("gcp_project_id", "my-google-proj", "'google'"),
        ("gcp_project_id", "null-project", "'null'"),
        ("gcp_project_id", "project-", "hyphen"),
        ("service_account_id", "abc", "6-30 characters"),
        ("service_account_id", "a" * 31, "6-30 characters"),
        ("service_account_id", "Runner-1", "service account ID"),
        ("secret_name", "", "1-255 characters"),
        ("secret_name", "s" * 256, "1-255 characters"),
        ("secret_name", "openai.key", "secret ID"),
        ("artifact_registry_repo", "Cloud_Run", "Artifact Registry"),
        ("artifact_registry_repo", "repo-", "Artifact Registry"),
        ("region", "us-east1-d", "us-east1-d is a zone; Cloud Run needs a region such as us-east1"),
        ("region", "us", "us is a multi-region"),
        ("region", "eu", "multi-region"),
        ("region", "us-central", "did you mean us-central1?"),
        ("region", "", "not a Cloud Run region"),
        ("openai_model", "", "non-empty"),
        ("openai_model", "gpt 4o", "no whitespace"),
        ("openai_model", "gpt-4o;rm", "gpt-4o-mini"),
        ("description", "line one\nline two", "one line"),
        ("description", "costs $(whoami)", "description"),
        ("python_version", "3.10", "3.13, 3.12, 3.11"),
        ("client_auth", "basic", "iam, api-key, none"),
        ("ci_provider", "jenkins", "github-actions"),
        ("openai_api", "assistants", "responses, chat-completions"),
    ],
)
def test_rejects_invalid_value_naming_the_rule(key: str, value: str, expected: str) -> None:
    """Each invalid answer yields one message that names the variable and states the rule."""
    errors = pre_gen_project.validate(default_answers(**{key: value}))
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{key}: ")
    assert expected in errors[0]


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        ("-1", "5", "min_instances: '-1' is not a whole number"),
        ("0", "0", "max_instances: 0 must be between 1"),
        ("6", "5", "min_instances: 6 is larger than max_instances 5"),
        ("one", "5", "min_instances: 'one' is not a whole number"),
        ("0", "1001", "max_instances: 1001 must be between 1 and 1000"),
        ("0", " 5", "max_instances: ' 5' is not a whole number"),
        (True, "5", "min_instances: True is not a whole number"),
    ],
)
def test_rejects_inconsistent_instance_counts(low: object, high: object, expected: str) -> None:
    """Instance counts are plain integers with 0 <= min <= max and 1 <= max <= 1000."""
    errors = pre_gen_project.check_instances(low, high)
    assert any(error.startswith(expected) for error in errors), errors


def test_accepts_instance_counts_given_as_integers_or_strings() -> None:
    """Integer defaults arrive as strings from cookiecutter, as ints from Python callers."""
    assert pre_gen_project.check_instances(0, 5) == []
    assert pre_gen_project.check_instances("1", "1") == []


@pytest.mark.parametrize(
    ("name", "hint"),
    [("Support-Bot", "(upper-case letters: try 'support-bot')"), ("a" * 50, "(50 characters)")],
)
def test_service_name_error_names_the_likely_slip_first(name: str, hint: str) -> None:
    message = pre_gen_project.check_service_name(name)
    assert message is not None
    assert message.startswith(f"{name!r} is not a Cloud Run service name {hint}: ")


def test_derived_account_id_is_not_reported_when_only_the_name_is_wrong() -> None:
    """The user never typed the account id: fixing service_name fixes it too."""
    errors = pre_gen_project.validate(
        default_answers(service_name="foo/bar", service_account_id="foo/bar")
    )
    assert [error.split(":")[0] for error in errors] == ["service_name"]
    typed = pre_gen_project.validate(
        default_answers(service_name="foo/bar", service_account_id="Bad_Account")
    )
    assert [error.split(":")[0] for error in typed] == ["service_name", "service_account_id"]


def test_description_rule_shows_single_braces() -> None:
    message = pre_gen_project.check_description("a $b")
    assert message is not None
    assert "< > { }" in message
    assert "{{" not in message


def test_reports_every_invalid_answer_at_once() -> None:
    """Several bad answers give several messages, not only the first."""
    errors = pre_gen_project.validate(
        default_answers(service_name="Bad", region="us", max_instances="0")
    )
    assert [error.split(":")[0] for error in errors] == ["service_name", "region", "max_instances"]


def test_jinja_in_an_answer_is_refused_unless_it_is_the_derived_default() -> None:
    """Answers are rendered as Jinja by cookiecutter: only the template's own expressions pass."""
    answers = default_answers(region="us-east1")
    raw = {"service_account_id": DEFAULTS["service_account_id"], "region": "{{ 'us-east1' }}"}
    errors = pre_gen_project.check_no_jinja(raw, answers)
    assert errors == [
        "region: \"{{ 'us-east1' }}\" contains Jinja markup ({{ }}, {% %}, {# #}), which "
        "cookiecutter would evaluate; answers must be plain values"
    ]


def test_jinja_account_id_that_is_not_the_derivation_is_refused() -> None:
    answers = default_answers(service_account_id="other-account")
    raw = {"service_account_id": "{{ 'other-account' }}"}
    assert len(pre_gen_project.check_no_jinja(raw, answers)) == 1


def render_hook(name: str, context: dict[str, Any]) -> str:
    """Render a hook exactly as cookiecutter does before running it."""
    env = StrictEnvironment(context=context, keep_trailing_newline=True)
    return env.from_string((HOOKS / name).read_text()).render(**context)


def run_rendered_hook(tmp_path: Path, name: str, context: dict[str, Any], **env: str):
    script = tmp_path / name
    script.write_text(render_hook(name, context))
    return subprocess.run(
        [sys.executable, script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


HOSTILE_STRING = "x'''\"\"\" + __import__('os').system('touch PWNED') + r'''\\"


def test_rendered_pre_gen_hook_reads_hostile_answers_as_data(tmp_path: Path) -> None:
    """Quotes, triple quotes and backslashes in an answer cannot break out of the JSON literal."""
    answers = default_answers(description=HOSTILE_STRING, _repo_dir=str(tmp_path))
    result = run_rendered_hook(
        tmp_path,
        "pre_gen_project.py",
        {"cookiecutter": answers, "_cookiecutter": answers},
    )
    assert result.returncode == 1
    assert "description: " in result.stderr
    assert not (tmp_path / "PWNED").exists()


def test_rendered_pre_gen_hook_accepts_the_defaults(tmp_path: Path) -> None:
    answers = default_answers(_repo_dir=str(tmp_path))
    result = run_rendered_hook(
        tmp_path, "pre_gen_project.py", {"cookiecutter": answers, "_cookiecutter": answers}
    )
    assert result.returncode == 0, result.stderr


def fake_tool(directory: Path, name: str, exit_code: int = 0) -> None:
    tool = directory / name
    tool.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "my-service"
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / "scripts").mkdir()
    for name in ("deploy.sh", "cloudbuild.yaml", "scripts/setup-github-wif.sh"):
        (root / name).write_text("#!/bin/sh\n")
    return root


def test_post_gen_hook_reports_every_tool_found(tmp_path: Path, project: Path) -> None:
    """With gcloud, docker and a docker whose `buildx version` works, all three are found."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir, "gcloud")
    fake_tool(bin_dir, "docker")
    context = {"cookiecutter": default_answers()}
    script = tmp_path / "post.py"
    script.write_text(render_hook("post_gen_project.py", context))
    result = subprocess.run(
        [sys.executable, script],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(bin_dir)},
        check=True,
    )
    for tool in ("gcloud", "docker", "docker buildx"):
        assert f"  found    {tool}\n" in result.stdout
    assert "missing" not in result.stdout
    assert "./deploy.sh" in result.stdout


def test_post_gen_hook_names_missing_tools_with_link_and_purpose(
    tmp_path: Path, project: Path
) -> None:
    """Without the tools the hook still succeeds, one line per tool: why and where to get it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir, "docker", exit_code=1)  # docker without the buildx plugin
    context = {"cookiecutter": default_answers()}
    script = tmp_path / "post.py"
    script.write_text(render_hook("post_gen_project.py", context))
    result = subprocess.run(
        [sys.executable, script],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(bin_dir)},
        check=True,
    )
    assert "missing  gcloud: needed for deploy.sh" in result.stdout
    assert "https://cloud.google.com/sdk/docs/install" in result.stdout
    assert "  found    docker\n" in result.stdout
    assert "missing  docker buildx: needed for linux/amd64 builds" in result.stdout


def test_post_gen_hook_makes_deploy_script_executable(tmp_path: Path, project: Path) -> None:
    post_gen_project.main(default_answers(), project)
    assert os.access(project / "deploy.sh", os.X_OK)


@pytest.mark.parametrize(
    ("provider", "kept", "removed"),
    [
        ("github-actions", [".github", "scripts/setup-github-wif.sh"], ["cloudbuild.yaml"]),
        ("cloud-build", ["cloudbuild.yaml"], [".github", "scripts/setup-github-wif.sh"]),
        ("none", [], [".github", "scripts/setup-github-wif.sh", "cloudbuild.yaml"]),
    ],
)
def test_post_gen_hook_removes_files_of_providers_not_chosen(
    project: Path, provider: str, kept: list[str], removed: list[str]
) -> None:
    post_gen_project.main(default_answers(ci_provider=provider), project)
    for path in kept:
        assert (project / path).exists(), path
    for path in removed:
        assert not (project / path).exists(), path


def test_post_gen_hook_warns_that_an_open_service_spends_the_budget(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """client_auth=none prints the risk and the max_instances ceiling; other modes do not."""
    post_gen_project.main(default_answers(client_auth="none", max_instances="7"), project)
    warning = capsys.readouterr().out
    assert "WARNING: client_auth=none" in warning
    assert "max_instances=7" in warning
    post_gen_project.main(default_answers(client_auth="iam"), project)
    assert "WARNING" not in capsys.readouterr().out
