"""Dialing rules through the API: POST /v1/calls, transfer destinations (saved and used), the
admin's override, and extensions reaching the carrier (FakeCarrier)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkturo import config
from talkturo.carrier.factory import set_carrier
from talkturo.domain.assistant_tools import TransferDestination
from talkturo.domain.common import utcnow
from talkturo.errors import InvalidRequest
from talkturo.local.template import Stack
from talkturo.services import accounts, transfers
from talkturo.store import calls as call_store
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import calls_setup, dial_queue, number_queue

NUMBER = "+14155550140"  # the account's number, the caller ID
SECOND = "+14155550141"
CALLEE = "+14155550199"
BERLIN = "+49 30 901820"
ADMIN = "an-admin-secret-for-tests"


@dataclass
class RedirectingCarrier(FakeCarrier):
    """Also takes redirects (a transfer moves the live call)."""

    redirects: list[tuple[str, str]] = field(default_factory=list)

    def redirect_call(self, carrier_sid: str, twiml: str) -> None:
        self.redirects.append((carrier_sid, twiml))


@pytest.fixture
def carrier(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedirectingCarrier]:
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://hooks.example.com")
    monkeypatch.setenv("TALKTURO_ADMIN_SECRET", ADMIN)
    config.get_settings.cache_clear()
    from talkturo.api import deps

    deps._admin_secret.cache_clear()
    fake = RedirectingCarrier()
    set_carrier(fake)
    yield fake
    set_carrier(None)
    deps._admin_secret.cache_clear()
    config.get_settings.cache_clear()


ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def _error(answer: Any) -> tuple[int, str, str | None]:
    body = answer.json()["error"]
    return answer.status_code, body["code"], body["param"]


def _place(client: TestClient, tenant: Tenant, assistant_id: str, **body: Any) -> Any:
    return client.post(
        "/v1/calls", json={"assistant_id": assistant_id, **body}, headers=tenant.headers
    )


def _transfer_tool(*numbers: str) -> dict[str, Any]:
    return {
        "type": "transfer_call",
        "config": {
            "destinations": [
                {"name": f"Desk {index}", "number": number} for index, number in enumerate(numbers)
            ]
        },
    }


def _buy(client: TestClient, stack: Stack, tenant: Tenant, number: str) -> None:
    bought = client.post("/v1/phone-numbers", json={"phone_number": number}, headers=tenant.headers)
    assert bought.status_code == 202, bought.text
    number_queue.drain(stack)


def test_refused_destinations_name_the_field_and_the_rule(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: RedirectingCarrier
) -> None:
    line = calls_setup.line(client, stack, tenant, NUMBER)
    berliner = client.post(
        "/v1/contacts", json={"first_name": "Ute", "phone": BERLIN}, headers=tenant.headers
    ).json()
    cases = [
        ({"to_number": "+1 900 234 5678"}, "destination_premium_rate", "to_number", "premium_rate"),
        ({"to_number": "+1 976 555 0123"}, "destination_premium_rate", "to_number", "premium_rate"),
        ({"to_number": "+882 1234 5678"}, "destination_high_risk", "to_number", "high_risk"),
        ({"to_number": "+44 909 879 0000"}, "destination_premium_rate", "to_number", "premium"),
        ({"to_number": NUMBER}, "destination_self_call", "to_number", "self_call"),
        ({"to_number": BERLIN}, "destination_country_not_allowed", "to_number", "allowed_count"),
        (
            {"contact_id": berliner["id"]},
            "destination_country_not_allowed",
            "contact_id",
            "allowed_countries",
        ),
        ({"to_number": "12"}, "invalid_phone_number", "to_number", "not a valid phone number"),
    ]
    for body, code, param, rule in cases:
        answer = _place(client, tenant, line.assistant_id, **body)
        assert _error(answer) == (422, code, param), (body, answer.text)
        assert rule in answer.json()["error"]["message"]
    # None of them made a call or a dial job
    assert client.get("/v1/calls", headers=tenant.headers).json()["data"] == []
    assert dial_queue.drain(stack) == []


def test_a_call_to_another_number_of_the_account_is_refused(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: RedirectingCarrier
) -> None:
    accounts.mark_paid(tenant.account_id)  # past the free plan's one trial number
    line = calls_setup.line(client, stack, tenant, NUMBER)
    _buy(client, stack, tenant, SECOND)
    assert _error(_place(client, tenant, line.assistant_id, to_number=SECOND)) == (
        422,
        "destination_self_call",
        "to_number",
    )


def test_an_extension_reaches_the_carrier_as_digits_after_the_answer(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: RedirectingCarrier
) -> None:
    line = calls_setup.line(client, stack, tenant, NUMBER)
    made = _place(client, tenant, line.assistant_id, to_number="(415) 555-0199 x 123")
    assert made.status_code == 201, made.text
    call = made.json()
    assert (call["to_number"], call["to_extension"]) == (CALLEE, "123")
    dial_queue.drain(stack)
    assert [(p.to, p.send_digits) for p in carrier.placed] == [(CALLEE, "ww123")]
    # A call without an extension sends no digits
    assert _place(client, tenant, line.assistant_id, to_number=CALLEE).status_code == 201
    dial_queue.drain(stack)
    assert carrier.placed[-1].send_digits is None


def test_an_admin_sets_the_countries_and_refuses_extensions(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: RedirectingCarrier
) -> None:
    line = calls_setup.line(client, stack, tenant, NUMBER)
    rules = client.get("/v1/account/dialing", headers=tenant.headers).json()
    assert (rules["allowed_countries"], rules["countries_from"]) == (["US"], "numbers")
    assert rules["extensions"] == "dtmf" and "PREMIUM_RATE" in rules["refused_number_types"]
    url = f"/v1/admin/accounts/{tenant.account_id}/dialing"
    # Only with the admin secret, for an account that exists, with real countries
    assert client.put(url, json={}, headers=tenant.headers).status_code == 401
    missing = "/v1/admin/accounts/acct_01J0000000000000000000000A/dialing"
    assert client.put(missing, json={}, headers=ADMIN_HEADERS).status_code == 404
    wrong = client.put(url, json={"allowed_countries": ["XX"]}, headers=ADMIN_HEADERS)
    assert _error(wrong) == (422, "invalid_value", "allowed_countries")
    # When an admin lets the account call Germany and refuse extensions
    set_to = {"allowed_countries": ["us", "DE"], "extensions": "refuse"}
    answer = client.put(url, json=set_to, headers=ADMIN_HEADERS)
    assert answer.status_code == 200, answer.text
    assert answer.json()["allowed_countries"] == ["DE", "US"]
    assert client.get("/v1/account/dialing", headers=tenant.headers).json()["countries_from"] == (
        "admin"
    )
    # Then a German number can be called, and an extension is refused
    assert _place(client, tenant, line.assistant_id, to_number=BERLIN).status_code == 201
    assert _error(_place(client, tenant, line.assistant_id, to_number=f"{CALLEE} ext 9")) == (
        422,
        "destination_extension_refused",
        "to_number",
    )
    # Premium rate stays refused whatever the admin allowed
    assert _error(_place(client, tenant, line.assistant_id, to_number="+49 900 1234567"))[1] == (
        "destination_premium_rate"
    )


def test_transfer_destinations_are_checked_when_the_tools_are_saved(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: RedirectingCarrier
) -> None:
    def create(*numbers: str) -> Any:
        body = {"template": "custom", "tools": [_transfer_tool(*numbers)]}
        return client.post("/v1/assistants", json=body, headers=tenant.headers)

    # Before the account holds a number: countries are not judged yet, the other rules are
    early = create(CALLEE, BERLIN)
    assert early.status_code == 201, early.text
    assert _error(create(CALLEE, "+1 900 234 5678")) == (
        422,
        "destination_premium_rate",
        "tools[0].config.destinations[1].number",
    )
    line = calls_setup.line(client, stack, tenant, NUMBER)
    # With a US number: Germany is refused, and so is the account's own number
    assert _error(create(CALLEE, BERLIN)) == (
        422,
        "destination_country_not_allowed",
        "tools[0].config.destinations[1].number",
    )
    assert _error(create(NUMBER))[1:] == (
        "destination_self_call",
        "tools[0].config.destinations[0].number",
    )
    # On PATCH too, when tools change; other changes do not re-judge the stored tools
    path = f"/v1/assistants/{early.json()['id']}"
    patched = client.patch(
        path, json={"tools": [_transfer_tool(CALLEE, "+870 773 111 632")]}, headers=tenant.headers
    )
    assert _error(patched) == (
        422,
        "destination_high_risk",
        "tools[0].config.destinations[1].number",
    )
    renamed = client.patch(path, json={"name": "Renamed"}, headers=tenant.headers)
    assert renamed.status_code == 200, renamed.text
    # An extension is kept with the number
    with_extension = client.patch(
        f"/v1/assistants/{line.assistant_id}",
        json={"tools": [_transfer_tool(f"{CALLEE} ext. 42")]},
        headers=tenant.headers,
    )
    assert with_extension.status_code == 200, with_extension.text
    destination = with_extension.json()["tools"][0]["config"]["destinations"][0]
    assert destination["number"] == f"{CALLEE};ext=42"


def _live_call(tenant: Tenant, line: calls_setup.Line) -> Any:
    from talkturo.domain.calls import CallRecord
    from talkturo.ids import new_id

    record = CallRecord(
        id=new_id("call"),
        direction="outbound",
        status="in_progress",
        assistant_id=line.assistant_id,
        phone_number_id=line.number_id,
        from_number=NUMBER,
        to_number=CALLEE,
        created_at=utcnow(),
        carrier_sid="CA" + "0" * 32,
    )
    call_store.create(tenant.account_id, record)
    return record


def test_a_transfer_is_checked_again_when_it_happens(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: RedirectingCarrier
) -> None:
    line = calls_setup.line(client, stack, tenant, NUMBER)
    call = _live_call(tenant, line)
    # A destination saved before the rules (or before the account's numbers changed)
    stale = TransferDestination(name="Abroad", number="+493090182000")
    with pytest.raises(InvalidRequest) as refused:
        transfers.start_cold(tenant.account_id, call, stale, ring_tone=True)
    assert refused.value.code == "destination_country_not_allowed"
    with pytest.raises(InvalidRequest) as own:
        transfers.start_warm(
            tenant.account_id,
            call,
            TransferDestination(name="Us", number=NUMBER),
            brief="",
            ring_tone=False,
        )
    assert own.value.code == "destination_self_call"
    # Then nothing was dialled and the call has no transfer under way
    assert carrier.redirects == [] and carrier.placed == []
    assert call_store.get(tenant.account_id, call.id).transfer_status is None


def test_a_transfer_dials_the_destinations_extension_after_the_answer(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: RedirectingCarrier
) -> None:
    line = calls_setup.line(client, stack, tenant, NUMBER)
    call = _live_call(tenant, line)
    desk = TransferDestination(name="Desk", number=f"{CALLEE};ext=42")
    transfers.start_cold(tenant.account_id, call, desk, ring_tone=False)
    (_, twiml) = carrier.redirects[-1]
    assert f'<Number sendDigits="ww42">{CALLEE}</Number>' in twiml
    transfers.start_warm(tenant.account_id, call, desk, brief="Hi", ring_tone=False)
    assert [(p.to, p.send_digits) for p in carrier.placed] == [(CALLEE, "ww42")]
