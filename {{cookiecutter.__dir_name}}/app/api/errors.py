"""Every error as `{"error": {"code", "message"}}`: never a stack trace, never a secret."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from app.core.errors import ApiError

logger = logging.getLogger(__name__)

# Errors whose message names internals: the secret, the project, the gcloud command that fixes it.
{%- if cookiecutter.client_auth == "iam" %}
# client_auth=iam: only callers that hold roles/run.invoker get this far (Cloud Run checks them
# first), i.e. the team that runs the service, so they read the detail too.
{%- else %}
# client_auth={{ cookiecutter.client_auth }}: anyone may read these answers, so callers read only
# "not ready"; the log line written when the load failed carries the detail.
{%- endif %}
NOT_READY_CODES = frozenset({"key_unavailable", "client_keys_unavailable"})
SHOW_NOT_READY_DETAIL = {{ "True" if cookiecutter.client_auth == "iam" else "False" }}
# A media type as RFC 9110 writes it; anything else is not echoed back.
MEDIA_TYPE = re.compile(r"[\w.+-]{1,64}/[\w.+-]{1,64}")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def documented_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, so the schema describes what is really sent."""
    return {s: {"model": ErrorBody, "description": HTTPStatus(s).phrase} for s in statuses}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def api_error_response(error: ApiError) -> JSONResponse:
    """What the caller reads of an ApiError (the guard answers with it too)."""
    message = error.message
    if error.code in NOT_READY_CODES and not SHOW_NOT_READY_DETAIL:
        message = "not ready"
    return error_response(error.status, error.code, message, error.headers)


def validation_message(request: Request, error: RequestValidationError) -> str:
    """Name the field and the rule, or where the JSON breaks, without echoing the input back."""
    problems = []
    for item in error.errors():
        loc = item["loc"]
        if item["type"] == "json_invalid":
            where = _where(error.body, loc[-1])
            problems.append(f"the body is not valid JSON: {item['ctx']['error']} at {where}")
        elif tuple(loc) == ("body",) and not _is_json(request.headers.get("content-type", "")):
            problems.append(_not_json(request.headers.get("content-type", "")))
        else:
            problems.append(f"{'.'.join(str(part) for part in loc)}: {item['msg']}")
    return "; ".join(problems)


def _where(document: Any, position: Any) -> str:
    if not isinstance(document, str | bytes) or not isinstance(position, int):
        return f"position {position}"
    text = document if isinstance(document, str) else document.decode("utf-8", "replace")
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return f"line {line}, column {column} (position {position})"


def _is_json(content_type: str) -> bool:
    kind, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _not_json(content_type: str) -> str:
    media = content_type.partition(";")[0].strip()
    sent = f"Content-Type: {media}" if MEDIA_TYPE.fullmatch(media) else "no Content-Type"
    return f"the body must be JSON, sent with Content-Type: application/json (this one: {sent})"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return api_error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", validation_message(request, error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        # FastAPI answers 400 for a body it cannot decode (not UTF-8): invalid, so 422 like any.
        status = 422 if error.status_code == 400 else error.status_code
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
            422: "invalid_request",
        }
        # The headers too: a 405 must say which methods are allowed (Allow, RFC 9110).
        return error_response(
            status, code.get(status, "http_error"), str(error.detail), dict(error.headers or {})
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error")
