"""The process's one AsyncOpenAI client, the key behind it, and upstream failures as ApiErrors.

openai is imported off the event loop when the client is built (about 0.3 s), so /health answers
while it loads. After a 401 the key is resolved again once, which picks up a rotated secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, Any

from app.core.config import Settings
from app.core.errors import ApiError
from app.core.logging import redact_value
from app.core.secrets import SecretSource, SecretUnavailable, resolve_secret

if TYPE_CHECKING:
    from openai import AsyncOpenAI, AsyncStream
    from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam
    from openai.types.completion_usage import CompletionUsage

logger = logging.getLogger(__name__)


def openai_key_source(settings: Settings) -> SecretSource:
    return SecretSource(
        env_name="OPENAI_API_KEY",
        value=settings.openai_api_key,
        file=settings.openai_api_key_file,
        secret=settings.openai_api_key_secret,
        version=settings.openai_api_key_secret_version,
        project=settings.google_cloud_project,
        emulator_host=settings.secret_manager_emulator_host,
    )


class Upstream:
    def __init__(self, settings: Settings, resolve_key: Callable[[], str] | None = None) -> None:
        self.settings = settings
        self._resolve = resolve_key or partial(resolve_secret, openai_key_source(settings))
        self._client: AsyncOpenAI | None = None
        self._key: str | None = None
        self._started = asyncio.Event()
        self._rotating = asyncio.Lock()
        self.reason = "starting"

    @property
    def ready(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        """Resolve the key and build the client; a failure is logged and reported by /ready."""
        try:
            self._key = await asyncio.to_thread(self._resolve)
            redact_value(self._key)
            self._client = await asyncio.to_thread(self._build, self._key)
            self.reason = ""
            logger.info("OpenAI client ready")
        except SecretUnavailable as error:
            self.reason = f"OpenAI API key unavailable: {error}"
            logger.error(self.reason)
        finally:
            self._started.set()

    def _build(self, key: str) -> AsyncOpenAI:
        from openai import AsyncOpenAI

        return AsyncOpenAI(
            api_key=key,
            base_url=self.settings.openai_base_url,
            timeout=self.settings.openai_timeout_seconds,
            max_retries=self.settings.openai_max_retries,
        )

    async def client(self) -> AsyncOpenAI:
        """The client, waiting (bounded) while startup still resolves the key."""
        if not self._started.is_set():  # wait_for costs a task: only while starting
            with suppress(TimeoutError):
                await asyncio.wait_for(self._started.wait(), self.settings.key_wait_seconds)
        if self._client is None:
            raise ApiError(503, "key_unavailable", self.reason)
        return self._client

    async def _rotate(self, rejected: AsyncOpenAI) -> AsyncOpenAI | None:
        """After a 401: a client with the re-resolved key, or None when the key did not change."""
        async with self._rotating:
            if self._client is not rejected:  # another request already rotated it
                return self._client
            try:
                key = await asyncio.to_thread(self._resolve)
            except SecretUnavailable as error:
                logger.error("re-resolving the OpenAI API key failed: %s", error)
                return None
            if key == self._key:
                return None
            redact_value(key)
            self._key = key
            self._client = rejected.with_options(api_key=key)
            logger.warning("OpenAI rejected the API key; using the rotated one")
            return self._client

    async def create(self, **params: Any) -> Any:
        """`chat.completions.create` with the configured model; one retry after a key rotation."""
        import openai

        params = {"model": self.settings.openai_model, **params}
        client = await self.client()
        try:
            return await client.chat.completions.create(**params)
        except openai.AuthenticationError as error:
            rotated = await self._rotate(client)
            if rotated is None:
                raise upstream_error(error) from error
        except (openai.OpenAIError, ValueError) as error:  # ValueError: a body that is not JSON
            raise upstream_error(error) from error
        try:
            return await rotated.chat.completions.create(**params)
        except (openai.OpenAIError, ValueError) as error:
            raise upstream_error(error) from error

    async def complete(
        self, messages: list[ChatCompletionMessageParam], max_tokens: int
    ) -> ChatCompletion:
        completion: ChatCompletion = await self.create(
            messages=messages, max_completion_tokens=max_tokens
        )
        if isinstance(completion, str):  # openai hands back a 200 that is not JSON as its text
            raise upstream_error(ValueError("the answer is not JSON"))
        return completion

    async def stream(
        self, messages: list[ChatCompletionMessageParam], max_tokens: int
    ) -> AsyncStream[ChatCompletionChunk]:
        stream: AsyncStream[ChatCompletionChunk] = await self.create(
            messages=messages,
            max_completion_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        )
        return stream

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def log_usage(
    model: str, usage: CompletionUsage | None, started: float, spend: dict[str, Any] | None = None
) -> None:
    """One line per chat request, so cost can be summed per request in Cloud Logging.

    `spend`: the client's and the service's token spend today (budget.usage_fields).
    """
    fields = {
        "model": model,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "upstream_latency_ms": round((time.perf_counter() - started) * 1000, 1),
        **(spend or {}),
    }
    logger.info("chat completion", extra={"fields": fields})


def upstream_error(error: Exception) -> ApiError:
    """What the caller is told about an upstream failure (never the key, never a trace)."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        return ApiError(504, "upstream_timeout", "the model did not answer in time")
    if isinstance(error, openai.APIConnectionError):
        return ApiError(502, "upstream_unreachable", "the model's API could not be reached")
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return ApiError(502, "upstream_auth", "upstream rejected the API key")
    if isinstance(error, openai.RateLimitError):
        retry_after = error.response.headers.get("retry-after")
        headers = {"Retry-After": retry_after} if retry_after else None
        return ApiError(429, "upstream_rate_limited", "the model's API is rate limited", headers)
    if isinstance(error, openai.APIStatusError):
        return ApiError(502, "upstream_error", f"the model's API answered {error.status_code}")
    return ApiError(502, "upstream_error", "the model's answer could not be read")
