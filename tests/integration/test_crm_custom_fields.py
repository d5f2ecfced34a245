"""Custom field definitions over HTTP, and the values contacts and companies give for them."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Tenant


def define(client: TestClient, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    body = {"entity": "contact", "label": fields.get("key", "x").title(), **fields}
    answer = client.post("/v1/custom-fields", json=body, headers=tenant.headers)
    assert answer.status_code == 201, answer.json()
    created: dict[str, Any] = answer.json()
    return created


def test_definition_is_created_read_changed_and_deleted(client: TestClient, tenant: Tenant) -> None:
    # Given a select field
    tier = define(client, tenant, key="tier", type="select", options=["Gold", "Silver"])
    assert tier["id"].startswith("cf_")
    path = f"/v1/custom-fields/{tier['id']}"
    assert client.get(path, headers=tenant.headers).json() == tier
    # When its label and options change / Then they do
    changed = client.patch(
        path,
        json={"label": "Plan tier", "options": ["Gold", "Silver", "Bronze"]},
        headers=tenant.headers,
    )
    assert changed.status_code == 200
    assert changed.json()["label"] == "Plan tier"
    assert changed.json()["options"] == ["Gold", "Silver", "Bronze"]
    # When its type is asked to change / Then 409 naming type; the same type is fine
    refused = client.patch(path, json={"type": "text"}, headers=tenant.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["param"] == "type"
    assert client.patch(path, json={"type": "select"}, headers=tenant.headers).status_code == 200
    # When its key is asked to change / Then 422 naming key
    rekey = client.patch(path, json={"key": "plan"}, headers=tenant.headers)
    assert rekey.status_code == 422
    assert rekey.json()["error"]["param"] == "key"
    # When deleted / Then gone, and its key free again
    assert client.delete(path, headers=tenant.headers).status_code == 200
    assert client.get(path, headers=tenant.headers).status_code == 404
    define(client, tenant, key="tier", type="text")


def test_options_belong_to_select_fields_only(client: TestClient, tenant: Tenant) -> None:
    age = define(client, tenant, key="age", type="number")
    answer = client.patch(
        f"/v1/custom-fields/{age['id']}", json={"options": ["a"]}, headers=tenant.headers
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["param"] == "options"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"entity": "contact", "key": "Shoe Size", "label": "x", "type": "text"}, "key"),
        ({"entity": "deal", "key": "a", "label": "x", "type": "text"}, "entity"),
        ({"entity": "contact", "key": "a", "label": "x", "type": "colour"}, "type"),
        ({"entity": "contact", "key": "a", "label": "x", "type": "select"}, "options"),
        (
            {
                "entity": "contact",
                "key": "a",
                "label": "x",
                "type": "select",
                "options": ["A", "a"],
            },
            "options",
        ),
        ({"entity": "contact", "key": "a", "type": "text"}, "label"),
    ],
)
def test_bad_definitions_are_422_naming_the_field(
    client: TestClient, tenant: Tenant, body: dict[str, Any], param: str
) -> None:
    answer = client.post("/v1/custom-fields", json=body, headers=tenant.headers)
    assert answer.status_code == 422, answer.json()
    assert answer.json()["error"]["param"] == param


def test_keys_are_unique_per_entity(client: TestClient, tenant: Tenant) -> None:
    define(client, tenant, key="score", type="number")
    dup = client.post(
        "/v1/custom-fields",
        json={"entity": "contact", "key": "score", "label": "S", "type": "text"},
        headers=tenant.headers,
    )
    assert dup.status_code == 409
    assert dup.json()["error"]["param"] == "key"
    # And a company field may share the key
    define(client, tenant, entity="company", key="score", type="text")


def test_list_is_newest_first_filtered_by_entity_with_cursors(
    client: TestClient, tenant: Tenant
) -> None:
    made = [
        define(client, tenant, entity=entity, key=f"f{i}", type="text")["id"]
        for i, entity in enumerate(["contact", "company", "contact", "contact", "company"])
    ]
    everything = client.get("/v1/custom-fields", headers=tenant.headers).json()
    assert [f["id"] for f in everything["data"]] == list(reversed(made))
    first = client.get(
        "/v1/custom-fields", params={"entity": "contact", "limit": 2}, headers=tenant.headers
    ).json()
    assert [f["id"] for f in first["data"]] == [made[3], made[2]]
    assert first["has_more"] is True
    rest = client.get(
        "/v1/custom-fields",
        params={"entity": "contact", "limit": 2, "starting_after": first["next_cursor"]},
        headers=tenant.headers,
    ).json()
    assert [f["id"] for f in rest["data"]] == [made[0]]
    assert rest["has_more"] is False


def test_contact_values_are_validated_and_canonical(client: TestClient, tenant: Tenant) -> None:
    # Given one field of each type
    for key, type_, options in (
        ("note", "text", None),
        ("age", "number", None),
        ("since", "date", None),
        ("vip", "boolean", None),
        ("tier", "select", ["Gold", "Silver"]),
    ):
        define(client, tenant, key=key, type=type_, options=options)
    # When a contact gives values in loose forms / Then they are stored canonical
    ada = client.post(
        "/v1/contacts",
        json={
            "first_name": "Ada",
            "custom": {
                "note": " hi ",
                "age": "36",
                "since": "2024-02-29",
                "vip": "yes",
                "tier": "gold",
            },
        },
        headers=tenant.headers,
    ).json()
    assert ada["custom"] == {
        "note": "hi",
        "age": 36,
        "since": "2024-02-29",
        "vip": True,
        "tier": "Gold",
    }
    # When wrong values are given / Then 422 naming custom.<key>, nothing changed
    path = f"/v1/contacts/{ada['id']}"
    for custom, param in (
        ({"age": "old"}, "custom.age"),
        ({"since": "29/02/2024"}, "custom.since"),
        ({"vip": "perhaps"}, "custom.vip"),
        ({"tier": "Bronze"}, "custom.tier"),
        ({"shoe": 44}, "custom.shoe"),
    ):
        answer = client.patch(path, json={"custom": custom}, headers=tenant.headers)
        assert answer.status_code == 422, custom
        assert answer.json()["error"]["param"] == param
    # When values are merged and one removed with null / Then the rest stay
    merged = client.patch(
        path, json={"custom": {"age": 37, "note": None}}, headers=tenant.headers
    ).json()
    assert merged["custom"] == {"age": 37, "since": "2024-02-29", "vip": True, "tier": "Gold"}


def test_company_values_use_company_fields(client: TestClient, tenant: Tenant) -> None:
    define(client, tenant, entity="company", key="employees", type="number")
    define(client, tenant, entity="contact", key="age", type="number")
    acme = client.post(
        "/v1/companies",
        json={"name": "Acme", "custom": {"employees": "1,200"}},
        headers=tenant.headers,
    )
    assert acme.status_code == 201
    assert acme.json()["custom"] == {"employees": 1200}
    wrong_entity = client.patch(
        f"/v1/companies/{acme.json()['id']}", json={"custom": {"age": 3}}, headers=tenant.headers
    )
    assert wrong_entity.status_code == 422
    assert wrong_entity.json()["error"]["param"] == "custom.age"


def test_a_deleted_definition_refuses_new_values_but_lets_old_ones_go(
    client: TestClient, tenant: Tenant
) -> None:
    # Given a contact with a value of a field whose definition is then deleted
    age = define(client, tenant, key="age", type="number")
    ada = client.post(
        "/v1/contacts", json={"first_name": "Ada", "custom": {"age": 3}}, headers=tenant.headers
    ).json()
    client.delete(f"/v1/custom-fields/{age['id']}", headers=tenant.headers)
    path = f"/v1/contacts/{ada['id']}"
    # When a new value is given for the key / Then 422 naming it
    refused = client.patch(path, json={"custom": {"age": 4}}, headers=tenant.headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["param"] == "custom.age"
    # And other edits of the contact still work (stored values stay until removed)
    kept = client.patch(path, json={"notes": "x"}, headers=tenant.headers)
    assert kept.status_code == 200
    assert kept.json()["custom"] == {"age": 3}
    # When the stale value is removed with null / Then it goes, though no field has the key
    removed = client.patch(path, json={"custom": {"age": None}}, headers=tenant.headers)
    assert removed.status_code == 200, removed.json()
    assert removed.json()["custom"] == {}
    assert client.get(path, headers=tenant.headers).json()["custom"] == {}
    # And removing a key nobody ever defined is harmless, on create too
    bob = client.post(
        "/v1/contacts",
        json={"first_name": "Bob", "custom": {"never": None}},
        headers=tenant.headers,
    )
    assert bob.status_code == 201, bob.json()
    assert bob.json()["custom"] == {}


def test_a_deleted_company_field_lets_its_values_go(client: TestClient, tenant: Tenant) -> None:
    # Given a company with a value of a field whose definition is then deleted
    arr = define(client, tenant, entity="company", key="arr", type="number")
    acme = client.post(
        "/v1/companies", json={"name": "Acme", "custom": {"arr": 5}}, headers=tenant.headers
    ).json()
    client.delete(f"/v1/custom-fields/{arr['id']}", headers=tenant.headers)
    # When the value is removed with null / Then it goes
    removed = client.patch(
        f"/v1/companies/{acme['id']}", json={"custom": {"arr": None}}, headers=tenant.headers
    )
    assert removed.status_code == 200, removed.json()
    assert removed.json()["custom"] == {}


def test_another_accounts_definitions_are_invisible(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    age = define(client, tenant, key="age", type="number")
    path = f"/v1/custom-fields/{age['id']}"
    other = other_tenant.headers
    assert client.get(path, headers=other).status_code == 404
    assert client.patch(path, json={"label": "x"}, headers=other).status_code == 404
    assert client.delete(path, headers=other).status_code == 404
    assert client.get("/v1/custom-fields", headers=other).json()["data"] == []
    # And the other account cannot give values for it
    answer = client.post(
        "/v1/contacts", json={"first_name": "Eve", "custom": {"age": 3}}, headers=other
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["param"] == "custom.age"
    assert client.get(path, headers=tenant.headers).json() == age


def test_every_route_needs_a_key(client: TestClient, tenant: Tenant) -> None:
    for method, path in (
        ("POST", "/v1/custom-fields"),
        ("GET", "/v1/custom-fields"),
        ("GET", "/v1/custom-fields/cf_x"),
        ("PATCH", "/v1/custom-fields/cf_x"),
        ("DELETE", "/v1/custom-fields/cf_x"),
    ):
        assert client.request(method, path).status_code == 401


def test_create_is_idempotent_with_a_key(client: TestClient, tenant: Tenant) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "cf-1"}
    body = {"entity": "contact", "key": "age", "label": "Age", "type": "number"}
    first = client.post("/v1/custom-fields", json=body, headers=headers)
    second = client.post("/v1/custom-fields", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(client.get("/v1/custom-fields", headers=tenant.headers).json()["data"]) == 1
    reused = client.post("/v1/custom-fields", json={**body, "key": "other"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
