"""Every error the API answers with, mapped to one envelope in one place.

`{"error": {"type", "code", "message", "param"}}`. Bad input is 400/422 naming the field;
an unexpected failure is a 500 with a generic message (details only in the log).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from talkturo.errors import TalkturoError

# The codes of errors raised by the framework itself (unknown paths, methods, bodies).
HTTP_ERROR_CODES = {
    400: "invalid_body",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
HTTP_ERROR_FALLBACK = "http_error"


class ErrorDetail(BaseModel):
    type: str = Field(description="The kind of error: `invalid_request_error`, … (docs/errors.md).")
    code: str = Field(description="What exactly went wrong; stable, safe to branch on.")
    message: str = Field(description="A sentence for a person; may change between versions.")
    param: str | None = Field(description="The field, parameter or header at fault, if one is.")


class ErrorEnvelope(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


def envelope(status: int, type_: str, code: str, message: str, param: str | None) -> JSONResponse:
    body = {"error": {"type": type_, "code": code, "message": message, "param": param}}
    return JSONResponse(status_code=status, content=body)


def _param_of(loc: tuple[Any, ...] | list[Any]) -> str | None:
    # FastAPI locations start with where the value came from (body, query, path, header).
    param = ""
    for part in loc:
        if part in ("body", "query", "path", "header") and not param:
            continue
        if isinstance(part, int):
            param += f"[{part}]"
        else:
            param += f".{part}" if param else str(part)
    return param or None


def _message_of(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = _param_of(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        return envelope(
            400, "invalid_request_error", "invalid_json", "the body is not valid JSON", None
        )
    message = _message_of(first)
    if param:
        message = f"{param}: {message}"
    return envelope(422, "invalid_request_error", "invalid_value", message, param)


async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TalkturoError)
    return envelope(exc.status, exc.type, exc.code, exc.message, exc.param)


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_ERROR_CODES.get(exc.status_code, HTTP_ERROR_FALLBACK)
    return envelope(exc.status_code, "invalid_request_error", code, str(exc.detail), None)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Imported here: the logger (powertools) is only needed on this rare path, not at cold start.
    from talkturo.logs import logger

    logger.exception("unhandled error", extra={"path": request.url.path})
    return envelope(
        500,
        "api_error",
        "internal_error",
        "something went wrong on our side; it has been logged",
        None,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(TalkturoError, on_domain_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
