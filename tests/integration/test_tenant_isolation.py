"""Tenant isolation on every route of the API, found by walking the app's own route table.

A route added later is covered automatically; a route with a path parameter this test does not
know fails it, so whoever adds one must say which object it names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkturo.api.app import create_app
from talkturo.carrier.factory import set_carrier
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier

OPEN_ROUTES = {"/health", "/docs", "/openapi.json", "/docs/oauth2-redirect"}


def _api_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the API, from its own OpenAPI document."""
    return sorted(
        (method.upper(), path)
        for path, operations in create_app().openapi()["paths"].items()
        if path not in OPEN_ROUTES and not path.startswith("/v1/admin")
        for method in operations
    )


@pytest.fixture
def owned(client: TestClient, tenant: Tenant) -> Iterator[dict[str, str]]:
    """One object of every kind, owned by `tenant`, by path parameter name."""
    set_carrier(FakeCarrier())

    def create(path: str, headers: dict[str, str] | None = None, **kwargs: object) -> str:
        headers = {**tenant.headers, **(headers or {})}
        answer = client.post(path, headers=headers, **kwargs)  # type: ignore[arg-type]
        assert answer.status_code in (201, 202), answer.text
        return str(answer.json()["id"])

    company = create("/v1/companies", json={"name": "Acme"})
    call = _inbound_call(tenant)
    endpoint = create("/v1/webhook-endpoints", json={"url": "https://hooks.example.com/events"})
    assistant = create("/v1/assistants", json={"template": "custom"})
    yield {
        "endpoint_id": endpoint,
        "delivery_id": _delivery(tenant, endpoint),
        "call_id": call,
        "campaign_id": _campaign(tenant),
        "company_id": company,
        "contact_id": create(
            "/v1/contacts",
            json={"first_name": "Ada", "phone": "+14155550101", "company_id": company},
        ),
        "field_id": create(
            "/v1/custom-fields",
            json={"entity": "contact", "key": "budget", "type": "number", "label": "Budget"},
        ),
        "import_id": create(
            "/v1/contact-imports",
            content=b"first_name,phone\nBob,+14155550102\n",
            headers={"Content-Type": "text/csv"},
        ),
        "assistant_id": assistant,
        "suite_id": create(f"/v1/assistants/{assistant}/test-suites", json=SUITE),
        "key_id": create("/v1/api-keys", json={"name": "second"}),
        "phone_number_id": create("/v1/phone-numbers", json={"phone_number": "+14155550140"}),
        "run_id": _analysis_run(tenant),
        "version": "1",
    }
    set_carrier(None)


def _delivery(tenant: Tenant, endpoint_id: str) -> str:
    """A delivery of an event of `tenant` to its endpoint."""
    from talkturo.services import events
    from talkturo.store import events as event_store

    assert events.emit(tenant.account_id, "credits.low", {}, key="isolation") is not None
    (delivery,), _ = event_store.list_deliveries(
        tenant.account_id, endpoint_id, status=None, limit=10, starting_after=None
    )
    return delivery.id


def _campaign(tenant: Tenant) -> str:
    """A draft campaign of `tenant` (stored directly: no number or assistant needed)."""
    from talkturo.domain.campaigns import Audience, Campaign
    from talkturo.domain.common import utcnow
    from talkturo.ids import new_id
    from talkturo.store import campaigns as campaign_store

    now = utcnow()
    campaign = Campaign(
        id=new_id("campaign"),
        name="Spring",
        assistant_id="asst_01J0000000000000000000000A",
        phone_number_ids=["pn_01J0000000000000000000000A"],
        audience=Audience(type="filter"),
        created_at=now,
        updated_at=now,
    )
    campaign_store.create(tenant.account_id, campaign)
    return campaign.id


def _analysis_run(tenant: Tenant) -> str:
    """An analysis run of `tenant` (stored directly: nothing is queued)."""
    from talkturo.domain.call_analysis import AnalysisRun
    from talkturo.domain.common import utcnow
    from talkturo.ids import new_id
    from talkturo.store import analyses

    run = AnalysisRun(id=new_id("analysis_run"), status="queued", created_at=utcnow())
    analyses.create_run(tenant.account_id, run)
    return run.id


def _inbound_call(tenant: Tenant) -> str:
    """A call of `tenant` (recorded as the carrier webhook records an inbound call)."""
    from talkturo.domain.calls import CallRecord
    from talkturo.domain.common import utcnow
    from talkturo.ids import new_id
    from talkturo.store import calls as call_store

    record = CallRecord(
        id=new_id("call"),
        direction="inbound",
        status="ringing",
        assistant_id="asst_01J0000000000000000000000A",
        phone_number_id="pn_01J0000000000000000000000A",
        from_number="+14155550177",
        to_number="+14155550140",
        created_at=utcnow(),
    )
    call_store.create(tenant.account_id, record)
    return record.id


def test_every_route_needs_an_api_key(client: TestClient) -> None:
    for method, path in _api_routes():
        concrete = re.sub(r"\{[a-z_]+\}", "x_1", path)
        answer = client.request(method, concrete, headers={"Authorization": "Bearer tk_wrong"})
        assert answer.status_code == 401, f"{method} {path}: {answer.status_code}"


SUITE = {"name": "basics", "scenarios": [{"name": "hangs up", "caller": ["hang_up"]}]}
# Routes whose body has required fields: a valid one (a string: {name: the owned object's id}).
VALID_BODIES: dict[tuple[str, str], dict[str, Any] | str] = {
    ("POST", "/v1/assistants/{assistant_id}/test-suites"): SUITE,
    ("POST", "/v1/assistants/{assistant_id}/test-runs"): "suite_id",
}


def test_another_accounts_objects_are_404_on_every_route(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, owned: dict[str, str]
) -> None:
    checked = 0
    for method, path in _api_routes():
        names = re.findall(r"\{([a-z_]+)\}", path)
        if not names:
            continue
        unknown = set(names) - owned.keys()
        assert not unknown, f"{method} {path}: add an object for {unknown} to the fixture"
        concrete = path.format(**owned)
        # When the other account aims at this account's object (with a body the route takes:
        # an invalid one is refused before anything is looked up, which tells nothing either)
        body = VALID_BODIES.get((method, path), {}) if method in ("POST", "PATCH", "PUT") else None
        if isinstance(body, str):
            body = {body: owned[body]}
        answer = client.request(method, concrete, headers=other_tenant.headers, json=body)
        # Then it does not exist for them
        assert answer.status_code == 404, f"{method} {path}: {answer.status_code} {answer.text}"
        checked += 1
    assert checked >= 15
    # And nothing of the owner's was changed or deleted by those attempts
    for name, path in (
        ("company_id", "/v1/companies/{}"),
        ("contact_id", "/v1/contacts/{}"),
        ("field_id", "/v1/custom-fields/{}"),
        ("assistant_id", "/v1/assistants/{}"),
        ("suite_id", f"/v1/assistants/{owned['assistant_id']}/test-suites/{{}}"),
        ("import_id", "/v1/contact-imports/{}"),
        ("phone_number_id", "/v1/phone-numbers/{}"),
        ("call_id", "/v1/calls/{}"),
    ):
        assert client.get(path.format(owned[name]), headers=tenant.headers).status_code == 200
    keys = client.get("/v1/api-keys", headers=tenant.headers).json()["data"]
    assert all(k["revoked_at"] is None for k in keys)


def test_no_list_or_read_shows_another_accounts_ids(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, owned: dict[str, str]
) -> None:
    # Ids only: a version number is no secret.
    secrets = {tenant.account_id, tenant.key_id, *(v for k, v in owned.items() if k != "version")}
    reads = [path for method, path in _api_routes() if method == "GET" and "{" not in path]
    assert len(reads) >= 8
    for path in reads:
        answer = client.get(path, headers=other_tenant.headers)
        assert answer.status_code == 200, f"GET {path}: {answer.status_code}"
        leaked = [value for value in secrets if value in answer.text]
        assert not leaked, f"GET {path} shows {leaked}"
