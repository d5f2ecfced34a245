"""The OpenAPI document, with every error answer a route really gives.

FastAPI documents only the 2xx answer and a 422 of its own shape. Here each operation's error
statuses are derived from what it takes (authentication: 401, an id in the path: 404, a body or
parameters: 422, a JSON body: 400, `Idempotency-Key`: 409), plus the statuses a route declares
with `responses=errors_at(…)` for the refusals of its service (402, 409, 413, 415, 502, 503);
all of them answer the one error envelope. Built on the first request for the document.
"""

from __future__ import annotations

import http
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from talkturo.api.errors import ErrorEnvelope

ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"
_HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}

# What an error status means on any route; a route's own description wins.
_MEANINGS = {
    400: "The body cannot be read: not valid JSON (`invalid_json`, `invalid_body`).",
    401: "No valid API key (`invalid_api_key`, `api_key_revoked`).",
    402: "Not enough credits, or a free-plan limit (`billing_error`).",
    404: "No such object in this account (`resource_missing`).",
    409: "The request conflicts with the current state (`conflict` and others).",
    413: "The body is larger than this route takes (`payload_too_large`).",
    415: "The body's Content-Type is not one this route takes (`unsupported_media_type`).",
    422: "A value breaks a rule; `param` names it (`invalid_value` and others).",
    429: "Too many requests; retry later (`rate_limited`).",
    502: "The carrier refused or failed the request (`carrier_error`).",
    503: "A service the route needs is not configured (`carrier_not_configured`).",
}


def errors_at(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route whose service can refuse with these statuses."""
    return {status: {"description": _MEANINGS.get(status, "")} for status in statuses}


def derived_statuses(operation: dict[str, Any]) -> set[int]:
    """The error statuses any operation with these inputs can answer."""
    statuses: set[int] = set()
    parameters = operation.get("parameters", [])
    if operation.get("security"):
        statuses.add(401)
    if any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    body = operation.get("requestBody")
    if parameters or body:
        statuses.add(422)
    if body and "application/json" in body.get("content", {}):
        statuses.add(400)
    if any(p.get("in") == "header" and p.get("name") == "Idempotency-Key" for p in parameters):
        statuses.update({409, 422})  # a request with the key still running; a key reused
    return statuses


def _error_response(status: int, declared: dict[str, Any] | None) -> dict[str, Any]:
    description = _MEANINGS.get(status) or (declared or {}).get("description")
    return {
        "description": description or http.HTTPStatus(status).phrase,
        "content": {"application/json": {"schema": {"$ref": ENVELOPE_REF}}},
    }


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (cached on the app, as FastAPI's own)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        openapi_version=app.openapi_version,
        routes=app.routes,
        separate_input_output_schemas=app.separate_input_output_schemas,
    )
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            declared = {int(s) for s in responses if s.isdigit() and int(s) >= 400}
            for status in sorted(declared | derived_statuses(operation)):
                responses[str(status)] = _error_response(status, responses.get(str(status)))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    # FastAPI's own 422 shape is never answered: the envelope replaces it everywhere.
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(envelope.pop("$defs", {}))
    components["ErrorEnvelope"] = envelope
    app.openapi_schema = schema
    return schema
