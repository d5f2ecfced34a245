"""The OpenAPI document declares the answers the API really gives (the fuzz test checks the
answers against it; this checks the declarations themselves)."""

from __future__ import annotations

from typing import Any

import pytest

from talkturo.api.app import create_app

DOC: dict[str, Any] = create_app().openapi()
OPERATIONS = [
    (f"{method.upper()} {path}", operation)
    for path, item in DOC["paths"].items()
    for method, operation in item.items()
    if path.startswith("/v1/")
]


def test_fastapis_own_validation_error_shape_is_gone() -> None:
    schemas = DOC["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorEnvelope"]["properties"]) == {"error"}
    assert set(schemas["ErrorDetail"]["required"]) == {"type", "code", "message", "param"}


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=[n for n, _ in OPERATIONS])
def test_every_error_answer_is_the_envelope(name: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    errors = {status: r for status, r in responses.items() if int(status) >= 400}
    assert "401" in errors, "every /v1 route is authenticated"
    for response in errors.values():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}
    if any(p["in"] == "path" for p in operation.get("parameters", [])):
        assert "404" in errors
    if operation.get("parameters") or operation.get("requestBody"):
        assert "422" in errors
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        assert "400" in errors


@pytest.mark.parametrize(
    ("name", "statuses"),
    [
        ("POST /v1/contact-imports", {"413", "415"}),
        ("POST /v1/calls", {"402", "404", "409"}),
        ("POST /v1/phone-numbers", {"402", "409"}),
        ("GET /v1/phone-numbers/available", {"502", "503"}),
        ("DELETE /v1/assistants/{assistant_id}", {"409"}),
        ("POST /v1/admin/accounts", {"404"}),  # no admin API without an admin secret
    ],
)
def test_routes_declare_their_services_refusals(name: str, statuses: set[str]) -> None:
    operation = dict(OPERATIONS)[name]
    assert statuses <= set(operation["responses"])


def test_date_filters_are_declared_as_date_times() -> None:
    parameters = {p["name"]: p for p in dict(OPERATIONS)["GET /v1/calls"]["parameters"]}
    for name in ("created_after", "created_before"):
        formats = [s.get("format") for s in parameters[name]["schema"]["anyOf"]]
        assert "date-time" in formats
