"""Settings from the environment, read on first use, never at import time.

A plain pydantic model fed from os.environ: every setting is a scalar, so pydantic-settings would
add nothing but its import (about 10 ms of every cold start, with python-dotenv and argparse).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# The template answers this service was generated with; everything else is plain Python.
SERVICE_NAME = {{ cookiecutter.service_name | tojson }}
DEFAULT_MODEL = {{ cookiecutter.openai_model | tojson }}
DEFAULT_OPENAI_KEY_SECRET = {{ cookiecutter.secret_name | tojson }}
DEFAULT_CLIENT_KEYS_SECRET = {{ cookiecutter.__client_keys_secret | tojson }}
DEFAULT_PROJECT = {{ cookiecutter.gcp_project_id | tojson }}


class Settings(BaseModel):
    """Each field is read from the variable of its name in upper case (OPENAI_MODEL etc.);
    keyword arguments override the environment."""

    model_config = ConfigDict(extra="ignore")

    port: int = 8080
    log_level: str = "INFO"
    access_log: bool = False

    openai_api_key: SecretStr | None = None
    openai_api_key_file: Path | None = None
    openai_api_key_secret: str = DEFAULT_OPENAI_KEY_SECRET
    openai_api_key_secret_version: str = "latest"
    google_cloud_project: str | None = None
    secret_manager_emulator_host: str | None = None

    openai_base_url: str | None = None
    openai_model: str = DEFAULT_MODEL
    # Well below Cloud Run's 300 s request timeout, so the caller gets our 504, not a cut.
    openai_timeout_seconds: float = Field(default=60.0, gt=0, le=290)
    openai_max_retries: int = Field(default=2, ge=0, le=2)
    openai_max_tokens: int = Field(default=1024, ge=1)
    max_message_chars: int = Field(default=8000, ge=1)
    # How long /v1/chat waits for the key while startup is still resolving it.
    key_wait_seconds: float = Field(default=10.0, ge=0)

    rate_limit_per_minute: int = Field(default=60, ge=1)
    client_api_keys: SecretStr | None = None
    client_api_keys_file: Path | None = None
    client_api_keys_secret: str = DEFAULT_CLIENT_KEYS_SECRET
    client_api_keys_secret_version: str = "latest"

    # The guard on /v1: who may call, who is who, and what a caller may read
    # /docs, /redoc and /openapi.json map the API for anyone: off unless asked (`make run` asks).
    docs_enabled: bool = False
    # Which X-Forwarded-For entry, counted from the end, is the caller: 1 = the last, the one
    # Cloud Run's front end appends; 2 behind an external load balancer (the client is then second
    # to last); 0 = no proxy in front, the socket's peer.
    trusted_proxy_hops: int = Field(default=1, ge=0, le=10)
{%- if cookiecutter.client_auth == "api-key" %}
    # The client keys are re-read this often whatever the file's stat() says (at most 30 s, so a
    # revoked key stops working within 30 s even when its replacement has the same size and mtime).
    client_keys_refresh_seconds: float = Field(default=30.0, gt=0, le=30)
{%- endif %}

    # Conversations and the upstream call's time budget (OpenAI {{ "Responses" if cookiecutter.openai_api == "responses" else "Chat Completions" }} API)
    # The operator's instructions for every conversation; "" sends none.
    system_prompt: str = "You are a helpful assistant. Answer clearly and concisely."
    # Callers may send their own `system` (replacing SYSTEM_PROMPT) only when this is on.
    allow_client_system_prompt: bool = False
    max_turns: int = Field(default=50, ge=1)
{%- if cookiecutter.openai_api == "responses" %}
    # OpenAI keeps each response (30 days by default) so previous_response_id can continue it.
    openai_store: bool = True
{%- endif %}
    # Cloud Run's request timeout (deploy.sh --timeout): a stream ends 5 s before it.
    request_timeout_seconds: float = Field(default=300.0, gt=5, le=3600)
    # A `: keep-alive` comment after this many silent seconds keeps proxies from closing a stream.
    sse_keepalive_seconds: float = Field(default=15.0, gt=0, le=15)

    # Shared limits and token budgets (Redis): unset, every instance counts on its own.
    redis_url: SecretStr | None = None  # redis://[:PASSWORD@]HOST:PORT or rediss:// (TLS)
    redis_ca_file: Path | None = None  # the server's CA (Memorystore in-transit encryption)
    # Short: a Redis that does not answer must cost a request little (the fallbacks answer).
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=5)
    token_budget_per_day: int = Field(default=0, ge=0)  # whole service; 0 = none
    client_token_budget_per_day: int = Field(default=0, ge=0)  # per client; 0 = none
    budget_fail_open: bool = False  # Redis down: let calls through uncounted instead of 503

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        # Names match in any case, as on Windows; an empty variable counts as unset (e.g.
        # OPENAI_API_KEY="" falls through to Secret Manager).
        environ = {name.lower(): value for name, value in os.environ.items() if value}
        return {**{f: environ[f] for f in cls.model_fields if f in environ}, **values}

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(("redis://", "rediss://")):
            raise ValueError("REDIS_URL must start with redis:// or rediss:// (TLS)")
        return url

    @property
    def trace_project(self) -> str:
        """The project that Cloud Logging trace ids are qualified with."""
        return self.google_cloud_project or DEFAULT_PROJECT


@lru_cache
def get_settings() -> Settings:
    return Settings()
