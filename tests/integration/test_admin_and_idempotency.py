"""The admin API (sign-up, credit grants) and Idempotency-Key on creating POSTs."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from talkturo import config
from tests.conftest import Tenant

ADMIN = "an-admin-secret-for-tests"


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch, client: TestClient) -> dict[str, str]:
    monkeypatch.setenv("TALKTURO_ADMIN_SECRET", ADMIN)
    config.get_settings.cache_clear()
    from talkturo.api import deps

    deps._admin_secret.cache_clear()
    yield {"Authorization": f"Bearer {ADMIN}"}
    deps._admin_secret.cache_clear()


def test_admin_creates_an_account_with_key_and_signup_grant(
    client: TestClient, admin: dict[str, str]
) -> None:
    answer = client.post(
        "/v1/admin/accounts",
        json={"name": "Initech", "email": "ops@initech.example"},
        headers=admin,
    )
    assert answer.status_code == 201
    key = answer.json()["api_key"]["secret"]
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/account", headers=headers).json()["name"] == "Initech"
    assert client.get("/v1/credits", headers=headers).json()["balance"] == "10.0000"


def test_admin_routes_need_the_admin_secret(
    client: TestClient, admin: dict[str, str], tenant: Tenant
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, tenant.headers):
        answer = client.post("/v1/admin/accounts", json={"name": "x"}, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "invalid_admin_secret"


def test_admin_api_is_absent_without_a_configured_secret(client: TestClient) -> None:
    from talkturo.api import deps

    deps._admin_secret.cache_clear()
    answer = client.post(
        "/v1/admin/accounts", json={"name": "x"}, headers={"Authorization": "Bearer anything"}
    )
    assert answer.status_code == 404


def test_admin_grant_is_applied_once_per_idempotency_key(
    client: TestClient, admin: dict[str, str], tenant: Tenant
) -> None:
    body = {"kind": "grant", "amount": "5", "description": "goodwill"}
    headers = {**admin, "Idempotency-Key": "ticket-42"}
    first = client.post(
        f"/v1/admin/accounts/{tenant.account_id}/credits", json=body, headers=headers
    )
    again = client.post(
        f"/v1/admin/accounts/{tenant.account_id}/credits", json=body, headers=headers
    )
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert client.get("/v1/credits", headers=tenant.headers).json()["balance"] == "15.0000"


def test_admin_grant_validates_amount_and_account(
    client: TestClient, admin: dict[str, str], tenant: Tenant
) -> None:
    url = f"/v1/admin/accounts/{tenant.account_id}/credits"
    bad = client.post(url, json={"kind": "grant", "amount": "0.00001"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "amount"
    negative = client.post(url, json={"kind": "grant", "amount": "-3"}, headers=admin)
    assert negative.status_code == 422 and negative.json()["error"]["param"] == "amount"
    missing = client.post(
        "/v1/admin/accounts/acct_nope/credits", json={"kind": "grant", "amount": "1"}, headers=admin
    )
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"kind": "grant", "amount": 1e30}', "between -1,000,000 and 1,000,000"),
        ('{"kind": "grant", "amount": "1e30"}', "between -1,000,000 and 1,000,000"),
        ('{"kind": "grant", "amount": "1e23"}', "between -1,000,000 and 1,000,000"),
        ('{"kind": "adjustment", "amount": "-1000000.0001"}', "between -1,000,000"),
        ('{"kind": "grant", "amount": NaN}', "finite"),
        ('{"kind": "grant", "amount": "NaN"}', "finite"),
        ('{"kind": "grant", "amount": "Infinity"}', "finite"),
        ('{"kind": "adjustment", "amount": "-Infinity"}', "finite"),
        ('{"kind": "grant", "amount": "1.23456"}', "four decimal places"),
        ('{"kind": "grant", "amount": 0}', "zero"),
        ('{"kind": "grant", "amount": "-3"}', "a grant must be positive"),
        ('{"kind": "refund", "amount": "-3"}', "a refund must be positive"),
    ],
)
def test_admin_grant_amounts_out_of_bounds_are_a_422_naming_the_amount(
    client: TestClient, admin: dict[str, str], tenant: Tenant, body: str, message: str
) -> None:
    url = f"/v1/admin/accounts/{tenant.account_id}/credits"
    headers = {**admin, "Content-Type": "application/json"}
    answer = client.post(url, content=body, headers=headers)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["param"] == "amount" and message in error["message"], error
    assert client.get("/v1/credits", headers=tenant.headers).json()["balance"] == "10.0000"


def test_admin_grant_amounts_at_the_bounds_are_accepted(
    client: TestClient, admin: dict[str, str], tenant: Tenant
) -> None:
    url = f"/v1/admin/accounts/{tenant.account_id}/credits"
    for kind, amount in (("grant", "1000000"), ("adjustment", "-1000000"), ("grant", "0.0001")):
        answer = client.post(url, json={"kind": kind, "amount": amount}, headers=admin)
        assert answer.status_code == 201, answer.text
    assert client.get("/v1/credits", headers=tenant.headers).json()["balance"] == "10.0001"


def test_idempotency_key_replays_the_first_answer(client: TestClient, tenant: Tenant) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "create-ci-key"}
    first = client.post("/v1/api-keys", json={"name": "ci"}, headers=headers)
    again = client.post("/v1/api-keys", json={"name": "ci"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    keys = client.get("/v1/api-keys", headers=tenant.headers).json()["data"]
    assert len(keys) == 2


def test_idempotency_key_reused_with_another_body_is_refused(
    client: TestClient, tenant: Tenant
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "k1"}
    assert client.post("/v1/api-keys", json={"name": "a"}, headers=headers).status_code == 201
    answer = client.post("/v1/api-keys", json={"name": "b"}, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "idempotency_key_reused"


def test_idempotency_keys_are_per_account(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = client.post(
        "/v1/api-keys", json={"name": "a"}, headers={**tenant.headers, "Idempotency-Key": "same"}
    )
    theirs = client.post(
        "/v1/api-keys",
        json={"name": "a"},
        headers={**other_tenant.headers, "Idempotency-Key": "same"},
    )
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


def test_failed_request_is_not_remembered(client: TestClient, tenant: Tenant) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "retry-me"}
    bad = client.post("/v1/api-keys", json={"name": ""}, headers=headers)
    assert bad.status_code == 422
    good = client.post("/v1/api-keys", json={"name": "fixed"}, headers=headers)
    assert good.status_code == 201


def test_malformed_json_is_400(client: TestClient, tenant: Tenant) -> None:
    answer = client.post(
        "/v1/api-keys",
        content=b"{nope",
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_json"
