"""The API's Lambda entry (functions/api/app.py) answers API Gateway's HTTP API events."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import Tenant

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _lambda_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_lambda", ROOT / "functions/api/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _event(name: str, key: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    event["headers"]["authorization"] = f"Bearer {key}"
    return event


def test_the_sample_event_reaches_the_route(tenant: Tenant) -> None:
    # The HTTP API serves its $default stage: the path arrives as the client wrote it.
    event = _event("api_get_account.json", tenant.secret)
    assert event["rawPath"] == "/v1/account"

    answer = _lambda_module().handler(event, None)

    assert answer["statusCode"] == 200, answer["body"]
    assert json.loads(answer["body"])["id"] == tenant.account_id


def test_the_sample_create_event_creates_a_key_once(tenant: Tenant) -> None:
    event = _event("api_create_api_key.json", tenant.secret)
    handler = _lambda_module().handler

    first = handler(event, None)
    again = handler(copy.deepcopy(event), None)

    assert first["statusCode"] == 201, first["body"]
    assert json.loads(first["body"])["secret"].startswith("tk_")
    # The sample carries an Idempotency-Key: the retry gets the same key, not a second one.
    assert json.loads(again["body"])["id"] == json.loads(first["body"])["id"]
