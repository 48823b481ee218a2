"""The process's one AsyncOpenAI client: its key, its time budget, its retries and its failures.

Shared by both OpenAI APIs; `app.core.apis.{{ cookiecutter.openai_api | replace('-', '_') }}` builds
the request and reads the answer. openai is imported off the event loop when the client is built
(a slow import), so /health answers while it loads. After a 401 the key is resolved again once,
which picks up a rotated secret.

The body is posted with the SDK's own `client.post` as the adapter built it, and the answer is
read from the raw HTTP response: the SDK still sends the request (auth, base URL, error statuses
as exceptions), but skips its per-call type walk of the body (`create()` spends 0.1-0.5 ms a call
there) and builds no pydantic object per streamed chunk, the costliest part of relaying a stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncGenerator, Callable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, Any

from app.core.apis import {{ cookiecutter.openai_api | replace('-', '_') }} as api
from app.core.config import Settings
from app.core.context import current_client
from app.core.conversation import Conversation, EndedEarly, Outcome, Usage
from app.core.errors import ApiError
from app.core.logging import redact_value
from app.core.secrets import SecretSource, SecretUnavailable, resolve_secret

if TYPE_CHECKING:
    import httpx2
    from openai import APIStatusError, AsyncOpenAI

logger = logging.getLogger(__name__)

# Retries wait 0.5 s, then 1 s (with jitter), and only while the request's budget allows.
RETRY_BACKOFF_SECONDS = 0.5
# A stream ends this long before Cloud Run's request timeout, so the caller reads our error event.
STREAM_MARGIN_SECONDS = 5.0


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
            logger.info("OpenAI client ready", extra={"fields": {"openai_api": api.NAME}})
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
            max_retries=0,  # retried here, within the request's budget (`_open`)
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

    @property
    def key_fix(self) -> str:
        """What the operator does about a key OpenAI rejects, for where this key comes from."""
        settings = self.settings
        if settings.openai_api_key is not None:
            return (
                "OPENAI_API_KEY is fixed for an instance's life: set a valid key and redeploy, "
                "or mount the secret as a file (OPENAI_API_KEY_FILE) to rotate without one"
            )
        if settings.openai_api_key_file is not None:
            return (
                f"add a valid key as a new version of the secret mounted at "
                f"{settings.openai_api_key_file}; it is re-read after the next 401"
            )
        return f"gcloud secrets versions add {settings.openai_api_key_secret} --data-file=-"

    def _params(self, conversation: Conversation, stream: bool) -> dict[str, Any]:
        return api.params(conversation, self.settings, stream)

    async def _open(
        self, client: AsyncOpenAI, params: dict[str, Any], deadline: float
    ) -> httpx2.Response:
        """The upstream's raw HTTP response (status < 400), headers read, body not yet.

        Retried: connection errors and 5xx, with backoff, while `deadline` (loop time) allows.
        Not retried: a 429 goes to the caller at once with its Retry-After (waiting it out here
        would hold the request, and Cloud Run's billed instance, for nothing); a 401 is retried
        once, after re-reading the key.
        """
        import httpx2
        import openai

        loop = asyncio.get_running_loop()
        attempt, rotated = 0, False
        while True:
            try:
                # stream=True: the body is left unread, for the stream or the JSON reply.
                response: httpx2.Response = await client.post(
                    api.PATH, cast_to=httpx2.Response, body=params, stream=True
                )
                return response
            except openai.AuthenticationError:
                replacement = None if rotated else await self._rotate(client)
                if replacement is None:
                    raise
                client, rotated = replacement, True
            except (openai.APIConnectionError, openai.InternalServerError) as error:
                delay = RETRY_BACKOFF_SECONDS * 2**attempt * random.uniform(0.5, 1.0)  # noqa: S311
                if attempt >= self.settings.openai_max_retries or loop.time() + delay >= deadline:
                    raise
                attempt += 1
                log_failure(error, params["model"], retry_in_seconds=round(delay, 2))
                await asyncio.sleep(delay)

    @property
    def reply_budget(self) -> float:
        """OPENAI_TIMEOUT_SECONDS for a whole JSON reply, retries included."""
        stream_limit = self.settings.request_timeout_seconds - STREAM_MARGIN_SECONDS
        return min(self.settings.openai_timeout_seconds, stream_limit)

    async def reply(self, conversation: Conversation) -> Outcome:
        params = self._params(conversation, stream=False)
        client = await self.client()  # waits for startup, outside the upstream's budget
        deadline = asyncio.get_running_loop().time() + self.reply_budget
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._open(client, params, deadline)
                try:
                    body = json.loads(await response.aread())
                finally:
                    await response.aclose()
            return api.outcome(body)
        except (ApiError, asyncio.CancelledError):
            raise
        except Exception as error:  # noqa: BLE001 - every upstream failure becomes one ApiError
            raise failed(error, params["model"], self.key_fix) from None

    async def stream(self, conversation: Conversation) -> AnswerStream:
        """Open the stream; its first event must come within OPENAI_TIMEOUT_SECONDS."""
        params = self._params(conversation, stream=True)
        client = await self.client()  # waits for startup, outside the upstream's budget
        loop = asyncio.get_running_loop()
        first_by = loop.time() + self.reply_budget
        deadline = loop.time() + self.settings.request_timeout_seconds - STREAM_MARGIN_SECONDS
        try:
            async with asyncio.timeout_at(first_by):
                response = await self._open(client, params, first_by)
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                await response.aclose()  # e.g. a proxy's error page with status 200
                raise ValueError("the upstream's answer is not an event stream")
        except (ApiError, asyncio.CancelledError):
            raise
        except Exception as error:  # noqa: BLE001 - every upstream failure becomes one ApiError
            raise failed(error, params["model"], self.key_fix) from None
        idle = self.settings.openai_timeout_seconds
        return AnswerStream(response, params["model"], first_by, deadline, idle)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


class AnswerStream:
    """One upstream stream: its text deltas, then `outcome` (or an ApiError for how it failed).

    Time limits: the first event by `first_by`, each next one within `idle` seconds, all of it
    by `deadline` (loop times). `close()` closes the upstream connection, which stops the tokens
    being generated and paid for.
    """

    def __init__(
        self, response: httpx2.Response, model: str, first_by: float, deadline: float, idle: float
    ) -> None:
        self._response = response
        self._reader = api.StreamReader()
        self._first_by, self._deadline, self._idle = first_by, deadline, idle
        self.model = model
        self.outcome: Outcome | None = None

    @property
    def usage(self) -> Usage | None:
        """What the upstream reported, also for a stream that failed after its usage."""
        return self._reader.usage

    async def deltas(self) -> AsyncGenerator[str, None]:
        reader, deadline, idle = self._reader, self._deadline, self._idle
        loop = asyncio.get_running_loop()
        chunks = self._response.aiter_text()
        until = min(self._first_by, deadline)
        partial = ""
        try:
            while not reader.done:
                # One timer per network read, not per line (an event's lines arrive together),
                # and only around the read: a timeout spanning a `yield` would fire in whatever
                # the consumer awaits at that moment.
                async with asyncio.timeout_at(until):
                    chunk = await anext(chunks, None)
                if chunk is None:
                    lines, partial = [partial], ""
                else:
                    *lines, partial = (partial + chunk).split("\n")
                for line in lines:
                    if not line.startswith("data:"):  # `event:` names, comments, separators
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        chunk = None
                        break
                    delta = reader.read(json.loads(data))
                    until = min(loop.time() + idle, deadline)
                    if delta:
                        yield delta
                    if reader.done:
                        break
                if chunk is None:
                    break
            self.model = reader.model or self.model
            self.outcome = reader.finish()
        except Exception as error:  # noqa: BLE001 - reported in-band by the caller
            raise failed(error, self.model) from None

    async def close(self) -> None:
        await self._response.aclose()


def log_failure(error: Exception, model: str, key_fix: str = "", **extra: object) -> None:
    """One WARNING (ERROR for a rejected key, with `key_fix`) line per failed upstream call;
    never the key."""
    import openai

    fields: dict[str, object] = {
        "model": model,
        "client": current_client.get(),
        "error": type(error).__name__,
        **extra,
    }
    message = "upstream call failed"
    level = logging.WARNING
    if isinstance(error, openai.APIStatusError):
        fields.update(
            status=error.status_code,
            error_type=error.type,
            error_code=error.code,
            request_id=error.request_id,
        )
        message = f"upstream call failed: {error.status_code} {error.code or error.type or ''}"
        if error.status_code == 401:
            level = logging.ERROR
            message = f"OpenAI rejected the API key (401): rotate it: {key_fix}"
    elif isinstance(error, EndedEarly):
        upstream = {f"upstream_{name}": value for name, value in error.detail.items()}
        fields.update(error_code=error.code, **upstream)
        message = f"upstream answer ended early: {error.code}"
    logger.log(level, message.rstrip(), extra={"fields": fields})


def failed(error: Exception, model: str, key_fix: str = "") -> ApiError:
    """Log an upstream failure once and say what the caller is told."""
    log_failure(error, model, key_fix)
    return upstream_error(error)


def upstream_error(error: Exception) -> ApiError:
    """What the caller is told about an upstream failure (never the key, never a trace).

    The same statuses on both OpenAI APIs.
    """
    import httpx2
    import openai

    if isinstance(error, EndedEarly):
        return ApiError(502, error.code, error.message)
    if isinstance(error, openai.APIStatusError):
        return _status_error(error)
    if isinstance(error, TimeoutError | openai.APITimeoutError | httpx2.TimeoutException):
        return ApiError(504, "upstream_timeout", "the model did not answer in time")
    if isinstance(error, openai.APIConnectionError | httpx2.TransportError):
        return ApiError(502, "upstream_unreachable", "the model's API could not be reached")
    return ApiError(502, "upstream_error", "the model's answer could not be read")


def _status_error(error: APIStatusError) -> ApiError:
    status, code = error.status_code, error.code
    if status in {401, 403}:
        return ApiError(502, "upstream_auth", "upstream rejected the API key")
    if code == "insufficient_quota":  # billing, not load: no 429 that invites a retry
        return ApiError(503, "upstream_quota_exhausted", "the model's API quota is used up")
    if status == 429:
        retry_after = error.response.headers.get("retry-after")
        headers = {"Retry-After": retry_after} if retry_after else None
        return ApiError(429, "upstream_rate_limited", "the model's API is rate limited", headers)
    if code == "previous_response_not_found":
        return ApiError(404, "unknown_response_id", "previous_response_id is not a stored response")
    return ApiError(502, "upstream_error", f"the model's API answered {status}")
