"""What a user stores is safe to show: names hold no hidden characters, links are http(s)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Tenant

# NUL, a terminal colour escape, a right-to-left override and a first-strong isolate.
HIDDEN = ["Acme\x00", "\x1b[31mAcme", "Acme\u202egnp.exe", "\u2068Acme"]

# (method, path, body with the name to check in `{}`, param the 422 names)
NAMED = [
    ("PATCH", "/v1/account", {"name": "{}"}, "name"),
    ("POST", "/v1/api-keys", {"name": "{}"}, "name"),
    ("POST", "/v1/companies", {"name": "{}"}, "name"),
    ("POST", "/v1/contacts", {"first_name": "{}", "phone": "+14155550100"}, "first_name"),
    ("POST", "/v1/contacts", {"last_name": "{}", "phone": "+14155550100"}, "last_name"),
    ("POST", "/v1/contacts", {"job_title": "{}", "phone": "+14155550100"}, "job_title"),
    (
        "POST",
        "/v1/custom-fields",
        {"entity": "contact", "key": "tier", "label": "{}", "type": "text"},
        "label",
    ),
    ("POST", "/v1/assistants", {"name": "{}"}, "name"),
    (
        "POST",
        "/v1/phone-numbers",
        {"phone_number": "+14155550140", "friendly_name": "{}"},
        "friendly_name",
    ),
]


def _fill(body: dict[str, Any], value: str) -> dict[str, Any]:
    return {key: value if item == "{}" else item for key, item in body.items()}


def test_names_with_hidden_characters_are_refused_naming_the_field(
    client: TestClient, tenant: Tenant
) -> None:
    # One account for every case (a stack per case would make this the slowest test here).
    for method, path, body, param in NAMED:
        for hidden in HIDDEN:
            answer = client.request(method, path, json=_fill(body, hidden), headers=tenant.headers)
            case = f"{method} {path} {param}={hidden!r}"
            assert answer.status_code == 422, (case, answer.json())
            assert answer.json()["error"]["param"] == param, case
            assert "control or text-direction" in answer.json()["error"]["message"], case


def test_a_company_website_is_an_http_or_https_link(client: TestClient, tenant: Tenant) -> None:
    company = client.post("/v1/companies", json={"name": "Acme"}, headers=tenant.headers).json()
    for website in ["javascript:alert(1)", "data:text/html,x", "acme.example", "https://"]:
        created = client.post(
            "/v1/companies", json={"name": "Other", "website": website}, headers=tenant.headers
        )
        assert created.status_code == 422, created.json()
        assert created.json()["error"]["param"] == "website"
        # Nor can a change store one
        changed = client.patch(
            f"/v1/companies/{company['id']}", json={"website": website}, headers=tenant.headers
        )
        assert changed.status_code == 422 and changed.json()["error"]["param"] == "website"


def test_an_emptied_website_clears_it(client: TestClient, tenant: Tenant) -> None:
    company = client.post(
        "/v1/companies",
        json={"name": "Acme", "website": "https://acme.example"},
        headers=tenant.headers,
    ).json()
    changed = client.patch(
        f"/v1/companies/{company['id']}", json={"website": ""}, headers=tenant.headers
    )
    assert changed.status_code == 200 and changed.json()["website"] is None
