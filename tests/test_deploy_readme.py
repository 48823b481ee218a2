"""The generated README's deploy instructions: what they say, and every gcloud command in them
through the real gcloud parser.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import Bake
from tests.fixtures.deploy import (
    BUILD_ACCOUNT,
    BUILD_GRANTS,
    NO_ACCOUNT,
    flag_value,
    replay,
    replay_all,
)

# --- The README's deploy instructions ---------------------------------------------------------


def readme_section(project: Path, heading: str) -> str:
    text = (project / "README.md").read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def readme_gcloud_lines(text: str) -> list[list[str]]:
    """Every gcloud command in the README's bash blocks, as argv: continuation lines joined,
    comments dropped, `VAR=$(gcloud ...)`, `... | gcloud ...` and `gcloud ... > FILE`
    unwrapped, $BUILD_SA filled in."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"\s+#\s.*$", "", line.strip())
            if match := re.fullmatch(r"\w+=\$\((gcloud .*)\)", line):
                line = match.group(1)
            line = re.sub(r"\s+>\s*\S+$", "", line.rsplit("| ", 1)[-1])  # `> FILE` is the shell's
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


RUNTIME_ACCOUNT = "my-service@my-gcp-project.iam.gserviceaccount.com"
# The deployer's roles in the CI/CD section, each on the narrowest resource: (command, resource).
DEPLOYER_ROLES = {
    "roles/run.developer": ("projects", "my-gcp-project"),
    "roles/serviceusage.serviceUsageViewer": ("projects", "my-gcp-project"),
    "roles/cloudbuild.builds.editor": ("projects", "my-gcp-project"),
    "roles/iam.serviceAccountUser": ("service-accounts", RUNTIME_ACCOUNT),
    "roles/secretmanager.viewer": ("secrets", "openai-api-key"),
}
IAM_SMOKE_ROLES = {
    "roles/run.invoker": ("services", "my-service"),
    "roles/iam.serviceAccountOpenIdTokenCreator": ("service-accounts", BUILD_ACCOUNT),
}


def role_and_resource(argv: list[str]) -> tuple[str, tuple[str, str]]:
    """`... KIND add-iam-policy-binding RESOURCE ... --role=ROLE` -> (ROLE, (KIND, RESOURCE))."""
    at = argv.index("add-iam-policy-binding")
    return flag_value(argv, "role"), (argv[at - 1], argv[at + 1])


@pytest.mark.parametrize(
    ("ci_provider", "client_auth"),
    [("cloud-build", "iam"), ("cloud-build", "none"), ("github-actions", "iam")],
)
def test_readme_names_the_build_account_and_its_grants(
    bake_once: Bake, ci_provider: str, client_auth: str
) -> None:
    """Remote builds: the README shows how to find the account Cloud Build runs as and grants
    it exactly the roles a build needs; with cloudbuild.yaml also the deployer's least-privilege
    roles, none of them run.admin, each on the narrowest resource (the smoke test's two only
    when the service is private)."""
    project = bake_once(ci_provider=ci_provider, client_auth=client_auth)
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
    roles = dict(role_and_resource(argv) for argv in cicd if "add-iam-policy-binding" in argv)
    if ci_provider == "cloud-build":
        expected = DEPLOYER_ROLES | (IAM_SMOKE_ROLES if client_auth == "iam" else {})
        assert roles == expected
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
