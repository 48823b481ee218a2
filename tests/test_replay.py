"""Recovering from wrong answers: replay files and --no-input with the real cookiecutter CLI, and
the hook's copy of every value cookiecutter.json derives."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.environment import StrictEnvironment

from hooks import pre_gen_project
from tests.conftest import TEMPLATE_ROOT

COOKIECUTTER = Path(sys.executable).parent / "cookiecutter"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A HOME of its own, so the replay file lands in a throwaway ~/.cookiecutter_replay."""
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """The template reached as `path/to/template`: cookiecutter names the replay file after it."""
    link = tmp_path / "path" / "to" / "template"
    link.parent.mkdir(parents=True)
    link.symlink_to(TEMPLATE_ROOT, target_is_directory=True)
    return link


def cookiecutter(home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "COOKIECUTTER_CONFIG"}
    return subprocess.run(
        [COOKIECUTTER, *map(str, args)],
        capture_output=True,
        text=True,
        env={**env, "HOME": str(home)},
        cwd=home,  # away from the template: its filters load from the template's own folder
        timeout=120,
        check=False,
    )


def failed_first_run(home: Path, template: Path, out: Path) -> Path:
    """`--no-input service_name=My_Service`: refused, and the replay file records the answers."""
    result = cookiecutter(home, template, "--no-input", "-o", out, "service_name=My_Service")
    assert result.returncode != 0
    assert "service_name: 'My_Service' is not a Cloud Run service name" in result.stderr
    # The derived account id is just as invalid: the first list names it too.
    assert "service_account_id: 'My_Service' is not a service account ID" in result.stderr
    assert list(out.iterdir()) == []
    replay = home / ".cookiecutter_replay" / "template.json"
    assert replay.is_file(), sorted(home.rglob("*"))
    return replay


def fix_service_name_only(replay: Path) -> dict[str, str]:
    """What a user does after reading the error: corrects service_name, nothing else."""
    recorded = json.loads(replay.read_text())
    answers = recorded["cookiecutter"]
    assert answers["__dir_name"] == "My_Service"  # replay stores rendered values
    answers["service_name"] = "support-bot"
    replay.write_text(json.dumps(recorded))
    return answers


@pytest.mark.parametrize("flag", ["--replay-file", "--replay"])
def test_replay_with_stale_derived_values_is_refused_and_leaves_nothing(
    flag: str, home: Path, template: Path, tmp_path: Path
) -> None:
    """After fixing only service_name in the replay file, the stale derived values (folder name,
    client keys secret, account id) are each named with the value they must have; no folder
    is left behind."""
    out = tmp_path / "out"
    out.mkdir()
    replay = failed_first_run(home, template, out)
    fix_service_name_only(replay)
    args = [flag, replay] if flag == "--replay-file" else [flag]
    result = cookiecutter(home, template, *args, "-o", out)
    assert result.returncode != 0
    stderr = result.stderr
    assert "__dir_name: 'My_Service' does not follow the answers" in stderr
    assert "gives 'support-bot'" in stderr
    assert "__client_keys_secret: 'My_Service-client-api-keys' does not follow" in stderr
    assert "service_account_id: 'My_Service' is not a service account ID" in stderr
    assert "~/.cookiecutter_replay/template.json" in stderr
    assert "--no-input key=value" in stderr
    assert list(out.iterdir()) == []


def test_no_input_with_corrected_answers_recovers(
    home: Path, template: Path, tmp_path: Path
) -> None:
    """The recovery the README recommends: every derived value follows the corrected name."""
    out = tmp_path / "out"
    out.mkdir()
    failed_first_run(home, template, out)
    result = cookiecutter(home, template, "--no-input", "-o", out, "service_name=support-bot")
    assert result.returncode == 0, result.stderr
    project = out / "support-bot"
    assert 'name = "support-bot"' in (project / "pyproject.toml").read_text()
    assert "IMAGE ?= support-bot:dev" in (project / "Makefile").read_text()
    config = (project / "app" / "core" / "config.py").read_text()
    assert '"support-bot-client-api-keys"' in config
    assert "DEFAULT_SERVICE_ACCOUNT_ID='support-bot'" in (project / "scripts/common.sh").read_text()


DEFAULTS = json.loads((TEMPLATE_ROOT / "cookiecutter.json").read_text())
JINJA = re.compile(r"\{[{%]")


def render_in_order(overrides: dict[str, str]) -> dict[str, str]:
    """The answers as cookiecutter renders them: each default sees the answers before it."""
    env = StrictEnvironment(context={"cookiecutter": {}})
    answers: dict[str, str] = {}
    for key, default in DEFAULTS.items():
        if (key.startswith("_") and not key.startswith("__")) or key == "__prompts__":
            continue
        value = overrides.get(key, default[0] if isinstance(default, list) else default)
        if isinstance(value, str) and JINJA.search(value):
            value = env.from_string(value).render(cookiecutter=answers)
        answers[key] = str(value)
    return answers


def test_every_derived_value_in_cookiecutter_json_is_recomputed_by_the_hook() -> None:
    """A new derived default (a `__` key or a Jinja default) fails here until the pre-gen hook
    recomputes it, so a stale replay of it is caught like the others."""
    derived = {
        key for key, value in DEFAULTS.items() if isinstance(value, str) and JINJA.search(value)
    }
    assert derived == set(pre_gen_project.DERIVED)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"service_name": "support-bot"},
        {"service_name": "api"},
        {"service_name": "a" * 49},
        {"service_name": "x" * 29 + "-y"},
        {"service_name": "My_Service"},
        {"service_name": "foo/bar.baz"},
        {"service_name": ""},
        *({option: choice} for option in ("python_version", "client_auth", "ci_provider")
          for choice in DEFAULTS[option]),
    ],
)  # fmt: skip
def test_hook_derivations_match_what_cookiecutter_renders(overrides: dict[str, str]) -> None:
    """For names valid or not and every choice, the hook derives what cookiecutter.json does."""
    answers = render_in_order(overrides)
    for key, derive in pre_gen_project.DERIVED.items():
        assert derive(answers) == answers[key], key
    assert pre_gen_project.check_derived(answers) == []
