"""One JSON object per line on stdout, in the shape Cloud Logging parses.

Lines logged while a request is served carry its trace (see `trace_from_headers`), so they group
under Cloud Run's request log. Known secrets and anything shaped like an OpenAI key are redacted.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from app.core.config import DEFAULT_PROJECT

# An OpenAI-style key as a whole token: "sk-" not preceded by a word character or "-", so
# words such as "task-runner" or "disk-usage" stay intact.
SK_KEY = re.compile(r"(?<![\w-])sk-[A-Za-z0-9_-]{6,}")
REDACTED = "[REDACTED]"
# Both trace headers come from the caller: fixed-length fields only, matched whole, so a
# 5,000-digit span or a header of any length costs one bounded match and never raises.
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=[0-9])?")
MAX_TRACE_HEADER = 128
MAX_SPAN = 2**64 - 1

# (trace id, span id) of the request being served, set by the request middleware.
current_trace: ContextVar[tuple[str, str | None] | None] = ContextVar("trace", default=None)
_secrets: set[str] = set()


def redact_value(secret: str) -> None:
    """Never print `secret` again, wherever it would appear in a log line."""
    if len(secret) >= 4:
        _secrets.add(secret)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    return SK_KEY.sub(REDACTED, text)


def trace_from_headers(
    traceparent: str | None, cloud_trace: str | None
) -> tuple[str, str | None] | None:
    """W3C `traceparent` first, then Cloud Run's `X-Cloud-Trace-Context: TRACE[/SPAN][;o=1]`.

    A value that does not match (or an all-zero id, which both formats call invalid) is ignored:
    the request is served, its log lines carry no trace.
    """
    if traceparent and len(traceparent) <= MAX_TRACE_HEADER:
        match = TRACEPARENT.fullmatch(traceparent.strip())
        if match and int(match[1], 16) and int(match[2], 16):
            return match[1], match[2]
    if cloud_trace and len(cloud_trace) <= MAX_TRACE_HEADER:
        match = CLOUD_TRACE.fullmatch(cloud_trace.strip())
        if match and int(match[1], 16):
            # Cloud Logging wants the span as 16 hex digits; this header carries it in decimal.
            span = int(match[2]) if match[2] else 0
            return match[1].lower(), f"{span:016x}" if 0 < span <= MAX_SPAN else None
    return None


class CloudLoggingFormatter(logging.Formatter):
    def __init__(self, project: str) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        entry.update(getattr(record, "fields", {}))
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            entry["httpRequest"] = _http_request(record.args)
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        trace = current_trace.get()
        if trace:
            entry["logging.googleapis.com/trace"] = f"projects/{self.project}/traces/{trace[0]}"
            if trace[1]:
                entry["logging.googleapis.com/spanId"] = trace[1]
        return redact(json.dumps(entry, default=str))


def _http_request(args: tuple[Any, ...]) -> dict[str, Any]:
    """uvicorn's access log args: (client address, method, path, HTTP version, status)."""
    client, method, path, version, status = args
    return {
        "requestMethod": method,
        "requestUrl": path,
        "protocol": f"HTTP/{version}",
        "status": status,
        "remoteIp": str(client).rsplit(":", 1)[0],
    }


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to sys.stdout as it is when the line is logged (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def configure_logging(
    level: str = "INFO", project: str = DEFAULT_PROJECT, access_log: bool = False
) -> None:
    """Route the root logger and uvicorn's loggers through the JSON formatter on stdout."""
    handler = StdoutHandler()
    handler.setFormatter(CloudLoggingFormatter(project))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.setLevel(logging.NOTSET)  # follow LOG_LEVEL, whatever uvicorn's flags said
        logger.propagate = True
    # Cloud Run writes its own request log; uvicorn's costs about a quarter of the throughput.
    # uvicorn builds each access line's arguments whenever this logger has a handler anywhere up
    # the tree (hasHandlers), so "off" must also cut it from the root's handler.
    access = logging.getLogger("uvicorn.access")
    access.disabled = not access_log
    access.propagate = access_log
    # The HTTP client of openai logs every upstream call at INFO; the chat line says enough.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
