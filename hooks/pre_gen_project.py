"""Reject invalid answers before anything is rendered.

Each validator takes one answer and returns an error message, or None when the value is valid.
Every invalid answer is reported at once; the hook then exits 1 and cookiecutter removes the
project directory. The rules are the ones Google's APIs apply (sources in the README's table), so
a bad value fails here instead of half-way through a deploy.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

# The hook is rendered by Jinja before it runs: everything up to "endraw" is taken literally.
# {% raw %}

# Cloud Run regions (docs snapshot). A new region needs one line here and in deploy.sh.
CLOUD_RUN_REGIONS = frozenset(
    {
        "africa-south1",
        "asia-east1",
        "asia-east2",
        "asia-northeast1",
        "asia-northeast2",
        "asia-northeast3",
        "asia-south1",
        "asia-south2",
        "asia-southeast1",
        "asia-southeast2",
        "australia-southeast1",
        "australia-southeast2",
        "europe-central2",
        "europe-north1",
        "europe-southwest1",
        "europe-west1",
        "europe-west2",
        "europe-west3",
        "europe-west4",
        "europe-west6",
        "europe-west8",
        "europe-west9",
        "europe-west10",
        "europe-west12",
        "me-central1",
        "me-central2",
        "me-west1",
        "northamerica-northeast1",
        "northamerica-northeast2",
        "southamerica-east1",
        "southamerica-west1",
        "us-central1",
        "us-east1",
        "us-east4",
        "us-east5",
        "us-south1",
        "us-west1",
        "us-west2",
        "us-west3",
        "us-west4",
    }
)
MULTI_REGIONS = frozenset({"us", "eu", "asia", "global", "nam4", "eur3", "eur4", "nam-eur-asia1"})
ZONE = re.compile(r"(?P<region>[a-z]+-[a-z]+[0-9]+)-[a-z]")

SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?")
PROJECT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
PROJECT_ID_FORBIDDEN = ("google", "null", "undefined", "ssl")
SERVICE_ACCOUNT_ID = re.compile(r"[a-z]([-a-z0-9]{4,28})[a-z0-9]")
SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
ARTIFACT_REPO = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")
# Printable, one line; no characters a shell or a TOML/Python string would treat specially.
DESCRIPTION = re.compile(r"[^\x00-\x1f\x7f`$\\\"<>{}]{1,200}")
INTEGER = re.compile(r"[0-9]{1,4}")
MAX_INSTANCES_LIMIT = 1000
PYTHON_VERSIONS = ("3.13", "3.12", "3.11")
CLIENT_AUTH_MODES = ("iam", "api-key", "none")
CI_PROVIDERS = ("github-actions", "cloud-build", "none")
OPENAI_APIS = ("responses", "chat-completions")
JINJA_MARKUP = re.compile(r"\{[{%#]")


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def service_name_hint(value: str) -> str:
    """The most likely slip, named before the full rule."""
    if len(value) > 49:
        return f" ({len(value)} characters)"
    if value != value.lower() and _matches(SERVICE_NAME, value.lower()):
        return f" (upper-case letters: try {value.lower()!r})"
    return ""


def check_service_name(value: object) -> str | None:
    if _matches(SERVICE_NAME, value):
        return None
    hint = service_name_hint(value) if isinstance(value, str) else ""
    return (
        f"{value!r} is not a Cloud Run service name{hint}: start with a lowercase letter, use "
        "only lowercase letters, digits and hyphens, do not end with a hyphen, at most 49 "
        "characters (e.g. my-service)"
    )


def check_project_id(value: object) -> str | None:
    rule = (
        "6-30 characters, lowercase letters, digits and hyphens, starting with a letter and not "
        "ending with a hyphen (e.g. my-gcp-project)"
    )
    if not isinstance(value, str) or not PROJECT_ID.fullmatch(value):
        return f"{value!r} is not a Google Cloud project ID: {rule}"
    forbidden = [word for word in PROJECT_ID_FORBIDDEN if word in value]
    if forbidden:
        return f"{value!r} contains {forbidden[0]!r}, which project IDs may not contain"
    return None


def check_service_account_id(value: object) -> str | None:
    if _matches(SERVICE_ACCOUNT_ID, value):
        return None
    return (
        f"{value!r} is not a service account ID: 6-30 characters, lowercase letters, digits and "
        "hyphens, starting with a letter and not ending with a hyphen (e.g. my-service)"
    )


def check_secret_name(value: object) -> str | None:
    if _matches(SECRET_ID, value):
        return None
    return (
        f"{value!r} is not a Secret Manager secret ID: 1-255 characters of letters, digits, "
        "underscores and hyphens (e.g. openai-api-key)"
    )


def check_artifact_registry_repo(value: object) -> str | None:
    if _matches(ARTIFACT_REPO, value):
        return None
    return (
        f"{value!r} is not an Artifact Registry repository ID: lowercase letters, digits and "
        "hyphens, starting with a letter and not ending with a hyphen, at most 63 characters "
        "(e.g. cloud-run)"
    )


def check_region(value: object) -> str | None:
    if isinstance(value, str) and value in CLOUD_RUN_REGIONS:
        return None
    text = value if isinstance(value, str) else repr(value)
    zone = ZONE.fullmatch(text)
    if zone and zone["region"] in CLOUD_RUN_REGIONS:
        return f"{text} is a zone; Cloud Run needs a region such as {zone['region']}"
    if text.lower() in MULTI_REGIONS:
        return f"{text} is a multi-region; Cloud Run needs a single region such as us-central1"
    close = difflib.get_close_matches(text, sorted(CLOUD_RUN_REGIONS), n=1)
    hint = f"did you mean {close[0]}?" if close else "e.g. us-central1 or europe-west1"
    return f"{text!r} is not a Cloud Run region ({hint})"


def check_model(value: object) -> str | None:
    if _matches(MODEL_NAME, value):
        return None
    return (
        f"{value!r} is not a model name: non-empty, no whitespace, only letters, digits and "
        "._:/@+- (e.g. gpt-4o-mini)"
    )


def check_description(value: object) -> str | None:
    if _matches(DESCRIPTION, value):
        return None
    return (
        f"{value!r} is not a usable description: one line of 1-200 characters without "
        'control characters or any of ` $ \\ " < > { } (e.g. Chat API for the support team)'
    )


def parse_instances(value: object) -> int | None:
    """Return the instance count, or None when the answer is not a plain non-negative integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if _matches(INTEGER, value):
        return int(str(value))
    return None


def check_instances(min_value: object, max_value: object) -> list[str]:
    low, high = parse_instances(min_value), parse_instances(max_value)
    errors = []
    if low is None:
        errors.append(f"min_instances: {min_value!r} is not a whole number >= 0 (e.g. 0)")
    if high is None:
        errors.append(f"max_instances: {max_value!r} is not a whole number >= 1 (e.g. 5)")
    if high is not None and not 1 <= high <= MAX_INSTANCES_LIMIT:
        errors.append(f"max_instances: {high} must be between 1 and {MAX_INSTANCES_LIMIT} (e.g. 5)")
    if low is not None and high is not None and low > high:
        errors.append(f"min_instances: {low} is larger than max_instances {high}")
    return errors


def check_choice(choices: tuple[str, ...]) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if value in choices:
            return None
        return f"{value!r} is not one of {', '.join(choices)}"

    return check


VALIDATORS: dict[str, Callable[[object], str | None]] = {
    "service_name": check_service_name,
    "description": check_description,
    "gcp_project_id": check_project_id,
    "region": check_region,
    "artifact_registry_repo": check_artifact_registry_repo,
    "service_account_id": check_service_account_id,
    "secret_name": check_secret_name,
    "openai_model": check_model,
    "python_version": check_choice(PYTHON_VERSIONS),
    "client_auth": check_choice(CLIENT_AUTH_MODES),
    "ci_provider": check_choice(CI_PROVIDERS),
    "openai_api": check_choice(OPENAI_APIS),
}


def derive_service_account_id(answers: Mapping[str, Any]) -> str:
    """What cookiecutter.json derives from service_name (a template test proves they agree)."""
    name = str(answers.get("service_name", ""))[:30].rstrip("-")
    return name if len(name) >= 6 else f"{name}-runner"


# Answers whose template default is a Jinja expression, and what that expression yields.
DERIVED: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "service_account_id": derive_service_account_id,
}


def check_no_jinja(raw: Mapping[str, Any], answers: Mapping[str, Any]) -> list[str]:
    """Cookiecutter renders answers given on the command line as Jinja: refuse markup in them.

    Only the template's own derived defaults may contain it, when they rendered to what they
    derive (an answer of the same shape as the default but another result is refused).
    """
    errors = []
    for key, value in raw.items():
        if not isinstance(value, str) or not JINJA_MARKUP.search(value):
            continue
        derive = DERIVED.get(key)
        if derive is not None and answers.get(key) == derive(answers):
            continue
        errors.append(
            f"{key}: {value!r} contains Jinja markup ({{{{ }}}}, {{% %}}, {{# #}}), which "
            "cookiecutter would evaluate; answers must be plain values"
        )
    return errors


def derived_from_invalid_answer(key: str, answers: Mapping[str, Any]) -> bool:
    """A derived default left as derived from an invalid service_name: fixing the name fixes it."""
    derive = DERIVED.get(key)
    return (
        derive is not None
        and answers.get(key) == derive(answers)
        and check_service_name(answers.get("service_name")) is not None
    )


def validate(answers: Mapping[str, Any]) -> list[str]:
    """Return one message per invalid answer (empty when everything is valid)."""
    errors = []
    for key, check in VALIDATORS.items():
        message = check(answers.get(key))
        if message and not derived_from_invalid_answer(key, answers):
            errors.append(f"{key}: {message}")
    errors += check_instances(answers.get("min_instances"), answers.get("max_instances"))
    return errors


def main(answers: Mapping[str, Any], raw: Mapping[str, Any]) -> int:
    errors = check_no_jinja(raw, answers) + validate(answers)
    if not errors:
        return 0
    print("Cannot generate the project; fix these answers and try again:", file=sys.stderr)
    for error in errors:
        print(f"  - {error}", file=sys.stderr)
    return 1


# {% endraw %}
if __name__ == "__main__":
    # Answers arrive as JSON data rendered by cookiecutter, never pasted into code.
    sys.exit(
        main(
            json.loads(r"""{{ cookiecutter | tojson }}"""),
            # cruft renders hooks without the raw answers: then only the checks above apply.
            json.loads(r"""{{ _cookiecutter | default({}) | tojson }}"""),
        )
    )
