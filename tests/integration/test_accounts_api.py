"""Accounts and API keys over HTTP."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Tenant


def test_account_is_read_with_its_key(client: TestClient, tenant: Tenant) -> None:
    # Given an account's key / When it reads its account / Then it gets its own
    answer = client.get("/v1/account", headers=tenant.headers)
    assert answer.status_code == 200
    assert answer.json()["id"] == tenant.account_id
    assert answer.json()["plan"] == "free"


def test_missing_and_bad_keys_are_401_in_the_error_envelope(
    client: TestClient, tenant: Tenant
) -> None:
    for headers in ({}, {"Authorization": "Bearer tk_nope"}, {"Authorization": "Basic abc"}):
        answer = client.get("/v1/account", headers=headers)
        assert answer.status_code == 401, headers
        error = answer.json()["error"]
        assert error["type"] == "authentication_error"
        assert set(error) == {"type", "code", "message", "param"}


def test_new_key_is_shown_once_listed_by_prefix_and_revocable(
    client: TestClient, tenant: Tenant
) -> None:
    created = client.post("/v1/api-keys", json={"name": "ci"}, headers=tenant.headers)
    assert created.status_code == 201
    secret = created.json()["secret"]
    key_id = created.json()["id"]
    assert secret.startswith("tk_")

    listed = client.get("/v1/api-keys", headers=tenant.headers).json()["data"]
    assert {k["id"] for k in listed} == {tenant.key_id, key_id}
    assert all("secret" not in k for k in listed)
    assert next(k for k in listed if k["id"] == key_id)["prefix"] == secret[:10]

    new_headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/v1/account", headers=new_headers).status_code == 200
    used = client.get("/v1/api-keys", headers=tenant.headers).json()["data"]
    assert next(k for k in used if k["id"] == key_id)["last_used_at"] is not None

    revoked = client.delete(f"/v1/api-keys/{key_id}", headers=tenant.headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    refused = client.get("/v1/account", headers=new_headers)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "api_key_revoked"


def test_a_key_cannot_revoke_itself(client: TestClient, tenant: Tenant) -> None:
    answer = client.delete(f"/v1/api-keys/{tenant.key_id}", headers=tenant.headers)
    assert answer.status_code == 422
    assert answer.json()["error"]["param"] == "id"


def test_update_account_validates_timezone(client: TestClient, tenant: Tenant) -> None:
    bad = client.patch(
        "/v1/account", json={"default_timezone": "Mars/Olympus"}, headers=tenant.headers
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "default_timezone"
    good = client.patch(
        "/v1/account", json={"default_timezone": "Europe/Berlin"}, headers=tenant.headers
    )
    assert good.status_code == 200
    assert (
        client.get("/v1/account", headers=tenant.headers).json()["default_timezone"]
        == "Europe/Berlin"
    )


def test_keys_of_another_account_are_invisible(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    answer = client.delete(f"/v1/api-keys/{tenant.key_id}", headers=other_tenant.headers)
    assert answer.status_code == 404
    listed = client.get("/v1/api-keys", headers=other_tenant.headers).json()["data"]
    assert [k["id"] for k in listed] == [other_tenant.key_id]
