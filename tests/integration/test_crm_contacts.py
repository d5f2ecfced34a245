"""Contacts over HTTP: CRUD, validation, DNC, unique phones, filters, search, isolation."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Tenant


def make_contact(client: TestClient, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    answer = client.post("/v1/contacts", json=fields, headers=tenant.headers)
    assert answer.status_code == 201, answer.json()
    body: dict[str, Any] = answer.json()
    return body


def make_company(client: TestClient, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    answer = client.post("/v1/companies", json=fields, headers=tenant.headers)
    assert answer.status_code == 201, answer.json()
    body: dict[str, Any] = answer.json()
    return body


def ids(page: dict[str, Any]) -> list[str]:
    return [c["id"] for c in page["data"]]


def names(crowd: dict[str, Any], page: dict[str, Any]) -> list[str]:
    """The crowd's names of a page's contacts, for readable failures."""
    by_id = {value: name for name, value in crowd.items()}
    return [by_id.get(i, i) for i in ids(page)]


def test_contact_is_created_read_changed_and_deleted(client: TestClient, tenant: Tenant) -> None:
    # Given a contact with a national US number and no time zone
    ada = make_contact(
        client,
        tenant,
        first_name="Ada",
        last_name="Lovelace",
        email="ada@example.com",
        phone="(415) 555-0123",
        secondary_phone="+1 212 555 0199",
        job_title="CTO",
        source="conference",
        tags=["VIP", "Lead"],
        notes="met in SF",
    )
    # Then the numbers are E.164, the zone is inferred, the status is new, tags folded
    assert ada["id"].startswith("ct_")
    assert ada["phone"] == "+14155550123"
    assert ada["secondary_phone"] == "+12125550199"
    assert ada["timezone"] == "America/Los_Angeles"
    assert (ada["lead_status"], ada["do_not_call"]) == ("new", False)
    assert ada["tags"] == ["vip", "lead"]
    assert "status_before_dnc" not in ada

    path = f"/v1/contacts/{ada['id']}"
    assert client.get(path, headers=tenant.headers).json() == ada
    changed = client.patch(
        path,
        json={"job_title": None, "lead_status": "contacted", "tags": ["x"]},
        headers=tenant.headers,
    ).json()
    assert changed["job_title"] is None
    assert changed["lead_status"] == "contacted"
    assert changed["tags"] == ["x"]
    assert changed["first_name"] == "Ada"
    assert client.delete(path, headers=tenant.headers).status_code == 200
    assert client.get(path, headers=tenant.headers).status_code == 404
    assert client.patch(path, json={"notes": "x"}, headers=tenant.headers).status_code == 404


def test_national_numbers_are_read_in_the_companys_country(
    client: TestClient, tenant: Tenant
) -> None:
    berlin = make_company(client, tenant, name="Berlin GmbH", country="DE")
    hans = make_contact(
        client, tenant, first_name="Hans", phone="030 1234567", company_id=berlin["id"]
    )
    assert hans["phone"] == "+49301234567"
    assert hans["timezone"] == "Europe/Berlin"
    assert hans["company_name"] == "Berlin GmbH"


def test_timezone_follows_a_new_number_unless_chosen(client: TestClient, tenant: Tenant) -> None:
    # Given a contact whose zone was inferred from a San Francisco number
    ada = make_contact(client, tenant, first_name="Ada", phone="+14155550123")
    path = f"/v1/contacts/{ada['id']}"
    # When the number moves to New York / Then the zone follows
    moved = client.patch(path, json={"phone": "+12125550123"}, headers=tenant.headers).json()
    assert moved["timezone"] == "America/New_York"
    # When a zone is chosen and the number changes again / Then the chosen zone stays
    client.patch(path, json={"timezone": "Europe/Lisbon"}, headers=tenant.headers)
    kept = client.patch(path, json={"phone": "+14155550123"}, headers=tenant.headers).json()
    assert kept["timezone"] == "Europe/Lisbon"
    # When the zone is cleared / Then it is inferred again
    cleared = client.patch(path, json={"timezone": None}, headers=tenant.headers).json()
    assert cleared["timezone"] == "America/Los_Angeles"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"first_name": "A", "phone": "12345"}, "phone"),
        ({"first_name": "A", "secondary_phone": "abc"}, "secondary_phone"),
        ({"first_name": "A", "email": "not-an-email"}, "email"),
        ({"first_name": "A", "timezone": "Mars/Olympus"}, "timezone"),
        ({"first_name": "A", "lead_status": "hot"}, "lead_status"),
        ({"first_name": "A", "company_id": "co_nope"}, "company_id"),
        ({"first_name": "A", "custom": {"nope": 1}}, "custom.nope"),
        ({"first_name": "A", "tags": [f"t{i}" for i in range(11)]}, "tags"),
        ({"first_name": "A", "do_not_call": "perhaps"}, "do_not_call"),
        ({"first_name": "A" * 101}, "first_name"),
        ({"first_name": "A", "mood": "happy"}, "mood"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: TestClient, tenant: Tenant, body: dict[str, Any], param: str
) -> None:
    answer = client.post("/v1/contacts", json=body, headers=tenant.headers)
    assert answer.status_code == 422, answer.json()
    assert answer.json()["error"]["param"] == param
    # And the message names the param at most once
    assert not answer.json()["error"]["message"].startswith(f"{param}: {param}")


def test_a_contact_needs_someone_to_call_or_write(client: TestClient, tenant: Tenant) -> None:
    answer = client.post("/v1/contacts", json={"job_title": "CEO"}, headers=tenant.headers)
    assert answer.status_code == 422
    assert "at least a name" in answer.json()["error"]["message"]


def test_patch_validates_like_create(client: TestClient, tenant: Tenant) -> None:
    ada = make_contact(client, tenant, first_name="Ada")
    path = f"/v1/contacts/{ada['id']}"
    for body, param in (
        ({"first_name": None}, "first_name"),  # nobody would be left to call or write
        ({"phone": "nope"}, "phone"),
        ({"lead_status": None}, "lead_status"),
        ({"company_id": "co_nope"}, "company_id"),
        ({"custom": {"x": 1}}, "custom.x"),
        ({"id": "ct_other"}, "id"),
    ):
        answer = client.patch(path, json=body, headers=tenant.headers)
        assert answer.status_code == 422, body
        assert answer.json()["error"]["param"] == param
    assert client.get(path, headers=tenant.headers).json() == ada


def test_dnc_flag_and_status_are_one_truth(client: TestClient, tenant: Tenant) -> None:
    # Given a qualified contact
    ada = make_contact(client, tenant, first_name="Ada", lead_status="qualified")
    path = f"/v1/contacts/{ada['id']}"

    def patch(body: dict[str, Any]) -> tuple[str, bool]:
        answer = client.patch(path, json=body, headers=tenant.headers)
        assert answer.status_code == 200, answer.json()
        return answer.json()["lead_status"], answer.json()["do_not_call"]

    # When the flag is set / Then the status is dnc
    assert patch({"do_not_call": True}) == ("dnc", True)
    # When the flag is cleared / Then the status before DNC comes back
    assert patch({"do_not_call": False}) == ("qualified", False)
    # When the status is set to dnc / Then the flag is set
    assert patch({"lead_status": "dnc"}) == ("dnc", True)
    # When another status is set / Then the flag is cleared
    assert patch({"lead_status": "customer"}) == ("customer", False)
    # And a new contact created as DNC, lifted, is "new"
    bob = make_contact(client, tenant, first_name="Bob", do_not_call=True)
    assert (bob["lead_status"], bob["do_not_call"]) == ("dnc", True)
    lifted = client.patch(
        f"/v1/contacts/{bob['id']}", json={"do_not_call": False}, headers=tenant.headers
    ).json()
    assert (lifted["lead_status"], lifted["do_not_call"]) == ("new", False)


def test_a_primary_phone_is_unique_per_account(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    # Given a contact holding a number
    ada = make_contact(client, tenant, first_name="Ada", phone="+14155550123")
    # When another contact takes it, in any format / Then 409 naming phone and the holder
    dup = client.post(
        "/v1/contacts",
        json={"first_name": "Bob", "phone": "(415) 555-0123"},
        headers=tenant.headers,
    )
    assert dup.status_code == 409
    assert dup.json()["error"]["param"] == "phone"
    assert ada["id"] in dup.json()["error"]["message"]
    bob = make_contact(client, tenant, first_name="Bob", phone="+14155550124")
    moved = client.patch(
        f"/v1/contacts/{bob['id']}", json={"phone": "+14155550123"}, headers=tenant.headers
    )
    assert moved.status_code == 409
    # And a secondary number may repeat, and another account may hold the same number
    make_contact(client, tenant, first_name="Cy", secondary_phone="+14155550123")
    make_contact(client, other_tenant, first_name="Eve", phone="+14155550123")
    # When the holder changes number / Then the old one is free
    client.patch(
        f"/v1/contacts/{ada['id']}", json={"phone": "+14155550125"}, headers=tenant.headers
    )
    assert (
        client.patch(
            f"/v1/contacts/{bob['id']}", json={"phone": "+14155550123"}, headers=tenant.headers
        ).status_code
        == 200
    )
    # When a holder is deleted / Then its number is free
    client.delete(f"/v1/contacts/{ada['id']}", headers=tenant.headers)
    make_contact(client, tenant, first_name="Dee", phone="+14155550125")


@pytest.mark.parametrize("empty", ["", "  ", None])
def test_an_empty_phone_clears_it_as_null_does(
    client: TestClient, tenant: Tenant, empty: str | None
) -> None:
    # Given a contact with two numbers and the zone inferred from the first
    ada = make_contact(
        client, tenant, first_name="Ada", phone="+14155550123", secondary_phone="+12125550199"
    )
    path = f"/v1/contacts/{ada['id']}"

    def search(q: str) -> list[str]:
        return ids(client.get("/v1/contacts", params={"q": q}, headers=tenant.headers).json())

    assert search("415555") == [ada["id"]]
    # When both numbers are sent empty
    answer = client.patch(
        path, json={"phone": empty, "secondary_phone": empty}, headers=tenant.headers
    )
    # Then both are cleared (null, never ""), and the inferred zone goes with the number
    assert answer.status_code == 200, answer.json()
    assert (answer.json()["phone"], answer.json()["secondary_phone"]) == (None, None)
    assert answer.json()["timezone"] is None
    assert client.get(path, headers=tenant.headers).json() == answer.json()
    # And the number no longer finds Ada, and is free for another contact
    assert search("415555") == []
    bob = make_contact(client, tenant, first_name="Bob", phone="(415) 555-0123")
    assert search("415555") == [bob["id"]]


def test_an_empty_phone_on_create_is_no_phone(client: TestClient, tenant: Tenant) -> None:
    # When a contact is created with empty numbers / Then it has none (and no zone)
    cy = make_contact(client, tenant, first_name="Cy", phone="", secondary_phone=" ")
    assert (cy["phone"], cy["secondary_phone"], cy["timezone"]) == (None, None, None)
    # And an empty number alone is no one to call
    nobody = client.post("/v1/contacts", json={"phone": ""}, headers=tenant.headers)
    assert nobody.status_code == 422
    assert "at least a name" in nobody.json()["error"]["message"]


@pytest.fixture
def crowd(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    """Seven contacts of two companies, with statuses, tags, DNC."""
    acme = make_company(client, tenant, name="Acme")
    globex = make_company(client, tenant, name="Globex")
    people = {
        "ada": {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@acme.example",
            "phone": "+14155550101",
            "company_id": acme["id"],
            "tags": ["vip"],
            "lead_status": "qualified",
        },
        "adam": {
            "first_name": "Adam",
            "last_name": "Smith",
            "phone": "+14155550102",
            "company_id": acme["id"],
            "lead_status": "new",
        },
        "bob": {
            "first_name": "Bob",
            "last_name": "Adams",
            "email": "bob@globex.example",
            "company_id": globex["id"],
            "tags": ["vip", "cold"],
            "do_not_call": True,
        },
        "cy": {
            "first_name": "Cy",
            "last_name": "Young",
            "phone": "+12125550103",
            "company_id": acme["id"],
            "tags": ["vip"],
            "do_not_call": True,
        },
        "dee": {"first_name": "Dee", "email": "dee@x.example", "lead_status": "customer"},
        "eve": {"first_name": "Eve", "tags": ["cold"], "lead_status": "qualified"},
        "fay": {"first_name": "Fay", "last_name": "Ada", "company_id": globex["id"]},
    }
    made = {name: make_contact(client, tenant, **body)["id"] for name, body in people.items()}
    return {"acme": acme["id"], "globex": globex["id"], **made}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["fay", "eve", "dee", "cy", "bob", "adam", "ada"]),
        ({"company_id": "acme"}, ["cy", "adam", "ada"]),
        ({"lead_status": "qualified"}, ["eve", "ada"]),
        ({"do_not_call": "true"}, ["cy", "bob"]),
        ({"do_not_call": "false"}, ["fay", "eve", "dee", "adam", "ada"]),
        ({"lead_status": "dnc"}, ["cy", "bob"]),
        ({"tag": "VIP"}, ["cy", "bob", "ada"]),
        ({"tag": "vip", "do_not_call": "false"}, ["ada"]),
        ({"company_id": "acme", "tag": "vip"}, ["cy", "ada"]),
        ({"company_id": "acme", "do_not_call": "false"}, ["adam", "ada"]),
        ({"company_id": "globex", "lead_status": "dnc"}, ["bob"]),
        ({"company_id": "acme", "q": "ada"}, ["adam", "ada"]),
        ({"company_id": "acme", "q": "ada l"}, ["ada"]),
        ({"lead_status": "qualified", "tag": "cold"}, ["eve"]),
        ({"lead_status": "qualified", "do_not_call": "true"}, []),
        ({"tag": "nobody"}, []),
        ({"company_id": "co_unknown"}, []),
    ],
)
def test_filters_combine(
    client: TestClient,
    tenant: Tenant,
    crowd: dict[str, Any],
    params: dict[str, str],
    expected: list[str],
) -> None:
    query = {k: crowd[v] if k == "company_id" and v in crowd else v for k, v in params.items()}
    answer = client.get("/v1/contacts", params=query, headers=tenant.headers)
    assert answer.status_code == 200, answer.json()
    assert names(crowd, answer.json()) == expected


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # Ordered by the first matching token (its key sorts "ada lovelace" before "ada"),
        # then oldest first; each contact once.
        ("ada", ["ada", "fay", "adam", "bob"]),
        ("ADA LOVE", ["ada"]),
        ("adams", ["bob"]),
        ("bob@glo", ["bob"]),
        ("(415) 555-0102", ["adam"]),
        ("+1 212", ["cy"]),
        ("415555010", ["ada", "adam"]),
        ("zed", []),
    ],
)
def test_search_by_prefix(
    client: TestClient, tenant: Tenant, crowd: dict[str, Any], q: str, expected: list[str]
) -> None:
    answer = client.get("/v1/contacts", params={"q": q}, headers=tenant.headers)
    assert answer.status_code == 200
    assert names(crowd, answer.json()) == expected


def test_search_with_other_filters(
    client: TestClient, tenant: Tenant, crowd: dict[str, Any]
) -> None:
    answer = client.get(
        "/v1/contacts",
        params={"q": "ada", "do_not_call": "false", "tag": "vip"},
        headers=tenant.headers,
    )
    assert ids(answer.json()) == [crowd["ada"]]


def test_search_follows_changes(client: TestClient, tenant: Tenant) -> None:
    ada = make_contact(client, tenant, first_name="Ada", email="ada@old.example")
    client.patch(
        f"/v1/contacts/{ada['id']}",
        json={"first_name": "Grace", "email": "g@new.example"},
        headers=tenant.headers,
    )

    def search(q: str) -> list[str]:
        return ids(client.get("/v1/contacts", params={"q": q}, headers=tenant.headers).json())

    assert search("ada") == []
    assert search("grace") == [ada["id"]]
    assert search("g@new") == [ada["id"]]
    client.delete(f"/v1/contacts/{ada['id']}", headers=tenant.headers)
    assert search("grace") == []
    tagged = client.get("/v1/contacts", params={"tag": "x"}, headers=tenant.headers).json()
    assert tagged["data"] == []


def test_a_first_name_token_of_earlier_versions_lists_once_and_goes_when_stale(
    client: TestClient, tenant: Tenant
) -> None:
    from talkturo.store.contacts import SearchTokenItem, search_partition

    # Given a contact with both names, and the first-name token item earlier versions wrote
    ada = make_contact(client, tenant, first_name="Ada", last_name="Lovelace")
    partition = search_partition(tenant.account_id)
    SearchTokenItem(partition, f"ada#{ada['id']}", contact_id=ada["id"]).save()

    def search(q: str) -> list[str]:
        return ids(client.get("/v1/contacts", params={"q": q}, headers=tenant.headers).json())

    def tokens() -> list[str]:
        return sorted(t.sk.rsplit("#", 1)[0] for t in SearchTokenItem.query(partition))

    # Then search lists the contact once, and no such item is written any more
    assert search("ad") == [ada["id"]]
    assert tokens() == ["ada", "ada lovelace", "lovelace"]
    # When the last name changes, the first name still stands: the item stays, harmless
    client.patch(f"/v1/contacts/{ada['id']}", json={"last_name": "King"}, headers=tenant.headers)
    assert tokens() == ["ada", "ada king", "king"]
    assert search("ada") == [ada["id"]]
    # When the first name changes, it is stale and goes
    client.patch(
        f"/v1/contacts/{ada['id']}", json={"first_name": "Augusta"}, headers=tenant.headers
    )
    assert tokens() == ["augusta king", "king"]
    assert search("ada") == []
    # And a contact deleted takes an earlier version's item with it
    SearchTokenItem(partition, f"augusta#{ada['id']}", contact_id=ada["id"]).save()
    client.delete(f"/v1/contacts/{ada['id']}", headers=tenant.headers)
    assert tokens() == []


@pytest.mark.parametrize(
    "params",
    [{}, {"company_id": "acme"}, {"lead_status": "new"}, {"tag": "t"}, {"q": "person"}],
)
def test_every_way_in_pages_with_cursors(
    client: TestClient, tenant: Tenant, params: dict[str, str]
) -> None:
    # Given seven contacts that every filter below matches
    acme = make_company(client, tenant, name="Acme")
    made = [
        make_contact(client, tenant, first_name=f"Person {i}", company_id=acme["id"], tags=["t"])[
            "id"
        ]
        for i in range(7)
    ]
    query = {k: acme["id"] if v == "acme" else v for k, v in params.items()}
    # When paged three at a time
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = client.get(
            "/v1/contacts",
            params={**query, "limit": 3, **({"starting_after": cursor} if cursor else {})},
            headers=tenant.headers,
        ).json()
        pages += 1
        seen.extend(ids(page))
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if not cursor:
            break
    # Then each comes once, in the list's order, in three pages
    assert pages == 3
    expected = made if "q" in params else list(reversed(made))
    assert seen == expected


def test_a_bad_cursor_is_422(client: TestClient, tenant: Tenant) -> None:
    for params in ({"starting_after": "garbage"}, {"starting_after": "e30", "tag": "x"}):
        answer = client.get("/v1/contacts", params=params, headers=tenant.headers)
        assert answer.status_code == 422
        assert answer.json()["error"]["param"] == "starting_after"


def test_bad_filters_are_422(client: TestClient, tenant: Tenant) -> None:
    for params, param in (
        ({"lead_status": "hot"}, "lead_status"),
        ({"do_not_call": "maybe"}, "do_not_call"),
        ({"q": ""}, "q"),
        ({"limit": 0}, "limit"),
    ):
        answer = client.get("/v1/contacts", params=params, headers=tenant.headers)
        assert answer.status_code == 422
        assert answer.json()["error"]["param"] == param


def test_another_accounts_contacts_are_invisible(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    # Given a contact of one account, with a company, a tag and a phone
    acme = make_company(client, tenant, name="Acme")
    ada = make_contact(
        client,
        tenant,
        first_name="Ada",
        phone="+14155550123",
        company_id=acme["id"],
        tags=["vip"],
        lead_status="qualified",
    )
    path = f"/v1/contacts/{ada['id']}"
    other = other_tenant.headers
    # When the other account reaches for it / Then 404 or nothing, on every route
    assert client.get(path, headers=other).status_code == 404
    assert client.patch(path, json={"notes": "x"}, headers=other).status_code == 404
    assert client.delete(path, headers=other).status_code == 404
    for params in (
        {},
        {"company_id": acme["id"]},
        {"tag": "vip"},
        {"q": "ada"},
        {"q": "4155550123"},
        {"lead_status": "qualified"},
        {"do_not_call": "false"},
    ):
        assert client.get("/v1/contacts", params=params, headers=other).json()["data"] == []
    # And its unchanged for its owner
    assert client.get(path, headers=tenant.headers).json() == ada


def test_every_route_needs_a_key(client: TestClient, tenant: Tenant) -> None:
    for method, path in (
        ("POST", "/v1/contacts"),
        ("GET", "/v1/contacts"),
        ("GET", "/v1/contacts/ct_x"),
        ("PATCH", "/v1/contacts/ct_x"),
        ("DELETE", "/v1/contacts/ct_x"),
    ):
        assert client.request(method, path).status_code == 401


def test_create_is_idempotent_with_a_key(client: TestClient, tenant: Tenant) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "ct-1"}
    body = {"first_name": "Ada", "phone": "+14155550123"}
    # When sent twice with one key / Then one contact (no phone conflict), the same answer
    first = client.post("/v1/contacts", json=body, headers=headers)
    second = client.post("/v1/contacts", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(client.get("/v1/contacts", headers=tenant.headers).json()["data"]) == 1
    # When the key is reused for another body / Then 422 idempotency_key_reused
    reused = client.post("/v1/contacts", json={"first_name": "Bob"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


def test_the_widest_change_fits_one_transaction(client: TestClient, tenant: Tenant) -> None:
    # DynamoDB takes 100 writes per transaction (the emulator is set to match)
    # Given a contact with every indexed field and ten tags
    acme = make_company(client, tenant, name="Acme")
    globex = make_company(client, tenant, name="Globex")
    ada = make_contact(
        client,
        tenant,
        first_name="Ada",
        last_name="Lovelace",
        email="ada@a.example",
        phone="+14155550123",
        company_id=acme["id"],
        tags=[f"old{i}" for i in range(10)],
    )
    # When all of them change at once
    changed = client.patch(
        f"/v1/contacts/{ada['id']}",
        json={
            "first_name": "Grace",
            "last_name": "Hopper",
            "email": "g@b.example",
            "phone": "+12125550123",
            "company_id": globex["id"],
            "tags": [f"new{i}" for i in range(10)],
        },
        headers=tenant.headers,
    )
    # Then it lands, with every index following
    assert changed.status_code == 200, changed.json()
    assert ids(client.get("/v1/contacts", params={"tag": "new9"}, headers=tenant.headers).json())
    assert not client.get("/v1/contacts", params={"tag": "old9"}, headers=tenant.headers).json()[
        "data"
    ]
    assert (
        client.get(f"/v1/companies/{globex['id']}", headers=tenant.headers).json()["contact_count"]
        == 1
    )


def test_a_filtered_walk_answers_in_bounded_steps(
    client: TestClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo.store import contacts as store

    # Given nine tagged contacts of which only every third is not DNC
    made = [
        make_contact(client, tenant, first_name=f"P{i}", tags=["t"], do_not_call=i % 3 != 0)["id"]
        for i in range(9)
    ]
    # And walks that read only two tag items per request
    monkeypatch.setattr(store, "MAX_EXAMINED", 2)
    monkeypatch.setattr(store, "_BATCH", 2)
    # When the callable ones are paged through
    seen: list[str] = []
    short_pages = 0
    cursor = None
    for _ in range(20):
        page = client.get(
            "/v1/contacts",
            params={
                "tag": "t",
                "do_not_call": "false",
                "limit": 2,
                **({"starting_after": cursor} if cursor else {}),
            },
            headers=tenant.headers,
        ).json()
        seen.extend(ids(page))
        short_pages += page["has_more"] and len(page["data"]) < 2
        cursor = page["next_cursor"]
        if not cursor:
            break
    # Then every match comes once, newest first, over pages that may be short
    assert seen == [made[6], made[3], made[0]]
    assert short_pages > 0


def test_a_lost_race_is_tried_again_then_409(client: TestClient, tenant: Tenant) -> None:
    from talkturo.domain.contacts import Contact
    from talkturo.errors import Conflict
    from talkturo.store import contacts as store

    ada = make_contact(client, tenant, first_name="Ada", tags=["a"])
    raced: list[int] = []

    def change_racing_once(current: Contact) -> Contact:
        if not raced:
            # Another writer changes the contact between this read and this write.
            raced.append(1)
            client.patch(
                f"/v1/contacts/{ada['id']}", json={"notes": "theirs"}, headers=tenant.headers
            )
        return current.model_copy(update={"job_title": "mine"})

    # When a write loses a race once / Then it is redone from a fresh read: both changes land
    store.update(tenant.account_id, ada["id"], change_racing_once)
    after = client.get(f"/v1/contacts/{ada['id']}", headers=tenant.headers).json()
    assert (after["notes"], after["job_title"]) == ("theirs", "mine")

    def change_always_racing(current: Contact) -> Contact:
        raced.append(1)
        client.patch(
            f"/v1/contacts/{ada['id']}", json={"notes": f"n{len(raced)}"}, headers=tenant.headers
        )
        return current.model_copy(update={"job_title": "never"})

    # When it loses every time / Then 409, and nothing of it landed
    with pytest.raises(Conflict):
        store.update(tenant.account_id, ada["id"], change_always_racing)
    assert (
        client.get(f"/v1/contacts/{ada['id']}", headers=tenant.headers).json()["job_title"]
        == "mine"
    )
