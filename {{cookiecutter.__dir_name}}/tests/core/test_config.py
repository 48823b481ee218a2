"""Settings come from the environment, with bounds that protect the budget."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import DEFAULT_MODEL, Settings, get_settings
from tests.conftest import Env


def test_defaults_follow_the_template_answers(env: Env) -> None:
    settings = Settings()
    assert settings.openai_model == DEFAULT_MODEL
    assert settings.openai_max_tokens == 1024
    assert settings.rate_limit_per_minute == 60
    assert settings.max_message_chars == 8000


def test_each_setting_is_read_from_its_variable(env: Env) -> None:
    env(RATE_LIMIT_PER_MINUTE="7", DOCS_ENABLED="true", REDIS_TIMEOUT_SECONDS="0.25")
    settings = get_settings()
    assert (settings.rate_limit_per_minute, settings.docs_enabled) == (7, True)
    assert settings.redis_timeout_seconds == 0.25


def test_keywords_override_the_environment(env: Env) -> None:
    env(RATE_LIMIT_PER_MINUTE="7", OPENAI_MODEL="from-the-environment")
    settings = Settings(rate_limit_per_minute=9)
    assert (settings.rate_limit_per_minute, settings.openai_model) == (9, "from-the-environment")


def test_an_empty_key_counts_as_absent(env: Env) -> None:
    env(OPENAI_API_KEY="")
    assert get_settings().openai_api_key is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPENAI_MAX_RETRIES", "3"),
        ("OPENAI_MAX_TOKENS", "0"),
        ("OPENAI_TIMEOUT_SECONDS", "600"),
        ("RATE_LIMIT_PER_MINUTE", "0"),
    ],
)
def test_rejects_values_outside_their_bounds(env: Env, name: str, value: str) -> None:
    env(**{name: value})
    with pytest.raises(ValidationError, match=name.lower()):
        get_settings()


def test_settings_are_read_once(env: Env) -> None:
    assert get_settings() is get_settings()
