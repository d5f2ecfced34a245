"""Property-based requests over every operation of the OpenAPI document: the document is true.

Schemathesis generates valid and invalid inputs from the API's own schema; whatever it sends,
the answer must be a proper answer (never a 500) that the document declares: its status, its
content type, its body's schema (the error envelope for errors) and its headers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from talkturo.api.app import create_app
from talkturo.carrier.factory import set_carrier
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier

pytestmark = pytest.mark.integration


# Building the app reads no setting and touches no AWS resource: the stack fixture (through
# `tenant`) points it at fresh resources before each operation's examples run.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@pytest.fixture(autouse=True)
def carrier() -> Iterator[None]:
    # A configured carrier: without one, number search is rightly a 503 (carrier_not_configured).
    set_carrier(FakeCarrier())
    yield
    set_carrier(None)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,  # the same inputs on every run: a failure here is reproducible
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_the_documented_one(case: schemathesis.Case, tenant: Tenant) -> None:
    case.call_and_validate(
        headers=tenant.headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            response_headers_conformance,
        ],
    )
