"""Companies over HTTP: CRUD, unique names, contact counts, isolation, idempotency."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Tenant


def make_company(client: TestClient, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    answer = client.post("/v1/companies", json={"name": "Acme", **fields}, headers=tenant.headers)
    assert answer.status_code == 201, answer.json()
    body: dict[str, Any] = answer.json()
    return body


def test_company_is_created_read_changed_and_deleted(client: TestClient, tenant: Tenant) -> None:
    # Given a new company with a national phone number in its own country
    created = make_company(
        client,
        tenant,
        name="Acme GmbH",
        country="de",
        phone="030 1234567",
        industry="Tools",
        website="https://acme.example",
        size="11-50",
        address="Berlin",
        notes="n",
    )
    # Then the number is E.164 read in that country, the country upper-cased, no contacts yet
    assert created["id"].startswith("co_")
    assert created["phone"] == "+49301234567"
    assert created["country"] == "DE"
    assert created["contact_count"] == 0

    # When it is read back, changed and deleted
    path = f"/v1/companies/{created['id']}"
    assert client.get(path, headers=tenant.headers).json() == created
    changed = client.patch(path, json={"industry": None, "notes": "new"}, headers=tenant.headers)
    assert changed.status_code == 200
    assert changed.json()["industry"] is None
    assert changed.json()["notes"] == "new"
    assert changed.json()["name"] == "Acme GmbH"
    deleted = client.delete(path, headers=tenant.headers)
    assert deleted.status_code == 200

    # Then it is gone
    assert client.get(path, headers=tenant.headers).status_code == 404
    assert client.delete(path, headers=tenant.headers).status_code == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "A", "country": "Germany"}, "country"),
        ({"name": "A", "phone": "not a phone"}, "phone"),
        ({"name": "A", "phone": "030 1234567"}, "phone"),  # a German number read in the US
        ({"name": "A", "custom": {"nope": 1}}, "custom.nope"),
        ({"name": "A", "colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: TestClient, tenant: Tenant, body: dict[str, Any], param: str
) -> None:
    answer = client.post("/v1/companies", json=body, headers=tenant.headers)
    assert answer.status_code == 422, answer.json()
    assert answer.json()["error"]["param"] == param


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_phone_is_no_phone(client: TestClient, tenant: Tenant, empty: str) -> None:
    # Given a company created with an empty phone / Then it has none
    assert make_company(client, tenant, name="Initech", phone=empty)["phone"] is None
    # Given a company with a phone / When it is changed to an empty one / Then it is cleared
    acme = make_company(client, tenant, phone="+14155550100")
    path = f"/v1/companies/{acme['id']}"
    cleared = client.patch(path, json={"phone": empty}, headers=tenant.headers)
    assert cleared.status_code == 200, cleared.json()
    assert cleared.json()["phone"] is None
    assert client.get(path, headers=tenant.headers).json()["phone"] is None


def test_names_are_unique_per_account_ignoring_case_and_spacing(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    # Given a company named "Acme Corp"
    first = make_company(client, tenant, name="Acme Corp")
    # When another is created as " acme   CORP" / Then 409 naming the name
    dup = client.post("/v1/companies", json={"name": " acme   CORP"}, headers=tenant.headers)
    assert dup.status_code == 409
    assert dup.json()["error"]["param"] == "name"
    assert first["id"] in dup.json()["error"]["message"]
    # And another account may use the same name
    make_company(client, other_tenant, name="Acme Corp")


def test_renaming_moves_the_name_guard(client: TestClient, tenant: Tenant) -> None:
    # Given two companies
    acme = make_company(client, tenant, name="Acme")
    make_company(client, tenant, name="Globex")
    path = f"/v1/companies/{acme['id']}"
    # When one is renamed to the other's name / Then 409
    taken = client.patch(path, json={"name": "GLOBEX"}, headers=tenant.headers)
    assert taken.status_code == 409
    assert taken.json()["error"]["param"] == "name"
    # When renamed to a free name / Then the old name is free again and the new one taken
    assert client.patch(path, json={"name": "Initech"}, headers=tenant.headers).status_code == 200
    make_company(client, tenant, name="acme")
    again = client.post("/v1/companies", json={"name": "initech"}, headers=tenant.headers)
    assert again.status_code == 409
    # And a change of case only keeps the company's own name
    recased = client.patch(path, json={"name": "INITECH"}, headers=tenant.headers)
    assert recased.status_code == 200
    assert recased.json()["name"] == "INITECH"


def test_patch_refuses_null_name_and_unknown_fields(client: TestClient, tenant: Tenant) -> None:
    acme = make_company(client, tenant)
    path = f"/v1/companies/{acme['id']}"
    for body, param in (({"name": None}, "name"), ({"contact_count": 3}, "contact_count")):
        answer = client.patch(path, json=body, headers=tenant.headers)
        assert answer.status_code == 422
        assert answer.json()["error"]["param"] == param


def test_contact_count_follows_contacts_and_blocks_deletion(
    client: TestClient, tenant: Tenant
) -> None:
    # Given two companies and three contacts of the first
    acme = make_company(client, tenant, name="Acme")
    globex = make_company(client, tenant, name="Globex")
    ids = []
    for name in ("Ada", "Bob", "Cy"):
        answer = client.post(
            "/v1/contacts",
            json={"first_name": name, "company_id": acme["id"]},
            headers=tenant.headers,
        )
        assert answer.status_code == 201
        ids.append(answer.json()["id"])

    def count(company: dict[str, Any]) -> int:
        found = client.get(f"/v1/companies/{company['id']}", headers=tenant.headers).json()
        return int(found["contact_count"])

    assert (count(acme), count(globex)) == (3, 0)
    # When one moves, one leaves any company, one is deleted
    moved = client.patch(
        f"/v1/contacts/{ids[0]}", json={"company_id": globex["id"]}, headers=tenant.headers
    )
    assert moved.json()["company_name"] == "Globex"
    client.patch(f"/v1/contacts/{ids[1]}", json={"company_id": None}, headers=tenant.headers)
    # Then the counts follow
    assert (count(acme), count(globex)) == (1, 1)
    # And a company with contacts cannot be deleted
    refused = client.delete(f"/v1/companies/{acme['id']}", headers=tenant.headers)
    assert refused.status_code == 409
    assert "1 contact" in refused.json()["error"]["message"]
    client.delete(f"/v1/contacts/{ids[2]}", headers=tenant.headers)
    assert count(acme) == 0
    assert client.delete(f"/v1/companies/{acme['id']}", headers=tenant.headers).status_code == 200


def test_a_contact_shows_the_companys_current_name(client: TestClient, tenant: Tenant) -> None:
    acme = make_company(client, tenant, name="Acme")
    ada = client.post(
        "/v1/contacts", json={"first_name": "Ada", "company_id": acme["id"]}, headers=tenant.headers
    ).json()
    assert ada["company_name"] == "Acme"
    # When the company is renamed / Then the contact (read or listed) shows the new name
    client.patch(f"/v1/companies/{acme['id']}", json={"name": "Acme 2"}, headers=tenant.headers)
    assert (
        client.get(f"/v1/contacts/{ada['id']}", headers=tenant.headers).json()["company_name"]
        == "Acme 2"
    )
    listed = client.get("/v1/contacts", headers=tenant.headers).json()["data"]
    assert listed[0]["company_name"] == "Acme 2"


def test_list_is_newest_first_with_cursors(client: TestClient, tenant: Tenant) -> None:
    # Given five companies
    made = [make_company(client, tenant, name=f"Co {i}")["id"] for i in range(5)]
    # When listed two at a time
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["starting_after"] = cursor
        page = client.get("/v1/companies", params=params, headers=tenant.headers).json()
        seen.extend(c["id"] for c in page["data"])
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if not cursor:
            break
    # Then every company comes once, newest first
    assert seen == list(reversed(made))


def test_another_accounts_companies_are_invisible(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    acme = make_company(client, tenant)
    path = f"/v1/companies/{acme['id']}"
    other = other_tenant.headers
    assert client.get(path, headers=other).status_code == 404
    assert client.patch(path, json={"notes": "x"}, headers=other).status_code == 404
    assert client.delete(path, headers=other).status_code == 404
    assert client.get("/v1/companies", headers=other).json()["data"] == []
    # And a contact of the other account cannot be linked to it
    linked = client.post(
        "/v1/contacts", json={"first_name": "Eve", "company_id": acme["id"]}, headers=other
    )
    assert linked.status_code == 422
    assert linked.json()["error"]["param"] == "company_id"
    # And the owner still sees it unchanged
    assert client.get(path, headers=tenant.headers).json() == acme
    # And a cursor of one account's list is refused in the other's
    for i in range(3):
        make_company(client, tenant, name=f"More {i}")
    cursor = client.get("/v1/companies?limit=1", headers=tenant.headers).json()["next_cursor"]
    stolen = client.get(f"/v1/companies?starting_after={cursor}", headers=other)
    assert stolen.status_code == 422
    assert stolen.json()["error"]["param"] == "starting_after"


def test_every_route_needs_a_key(client: TestClient, tenant: Tenant) -> None:
    for method, path in (
        ("POST", "/v1/companies"),
        ("GET", "/v1/companies"),
        ("GET", "/v1/companies/co_x"),
        ("PATCH", "/v1/companies/co_x"),
        ("DELETE", "/v1/companies/co_x"),
    ):
        assert client.request(method, path).status_code == 401


def test_create_is_idempotent_with_a_key(client: TestClient, tenant: Tenant) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "co-1"}
    # When the same creation is sent twice with one key / Then one company, the same answer
    first = client.post("/v1/companies", json={"name": "Acme"}, headers=headers)
    second = client.post("/v1/companies", json={"name": "Acme"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(client.get("/v1/companies", headers=tenant.headers).json()["data"]) == 1
    # When the key is reused for another body / Then 422 idempotency_key_reused
    reused = client.post("/v1/companies", json={"name": "Other"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
