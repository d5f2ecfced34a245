"""POST/GET /v1/calls and the dialer worker (FakeCarrier)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from fastapi.testclient import TestClient

from talkturo.carrier.base import CarrierError, InvalidPhoneNumber
from talkturo.domain.common import utcnow
from talkturo.local.template import Stack
from talkturo.services import credits
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import calls_setup, dial_queue

NUMBER = "+14155550140"
CALLEE = "+14155550199"


def _error(answer: object) -> tuple[int, str, str | None]:
    response = answer  # type: ignore[assignment]
    body = response.json()["error"]  # type: ignore[attr-defined]
    return response.status_code, body["code"], body["param"]  # type: ignore[attr-defined]


def test_place_a_call_dials_once_with_the_right_urls(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    line = calls_setup.line(
        client, stack, tenant, NUMBER, voicemail={"detect": True, "action": "hang_up"}
    )
    # When a call is placed, with an idempotency key, twice
    body = {"assistant_id": line.assistant_id, "to_number": "(415) 555-0199"}
    headers = {**tenant.headers, "Idempotency-Key": "call-1"}
    first = client.post("/v1/calls", json=body, headers=headers)
    again = client.post("/v1/calls", json=body, headers=headers)
    # Then one call is queued, from the assistant's number
    assert first.status_code == 201, first.text
    assert again.json()["id"] == first.json()["id"]
    call = first.json()
    assert call["object"] == "call" and call["status"] == "queued"
    assert (call["from_number"], call["to_number"]) == (NUMBER, CALLEE)
    assert call["phone_number_id"] == line.number_id and call["direction"] == "outbound"
    # When the dial job is delivered, and delivered again
    handled = dial_queue.drain(stack)
    assert len(handled) == 1
    dial_queue.invoke(stack, handled[0])
    # Then the carrier was asked once, with URLs naming the call
    assert len(carrier.placed) == 1
    placed = carrier.placed[0]
    query = f"call={call['id']}&account={tenant.account_id}"
    assert placed.answer_url == f"https://hooks.example.com/carrier/voice?{query}"
    assert placed.status_callback_url == f"https://hooks.example.com/carrier/status?{query}"
    assert placed.machine_detection and placed.machine_detection_mode == "Enable"
    assert (placed.to, placed.from_) == (CALLEE, NUMBER)
    got = client.get(f"/v1/calls/{call['id']}", headers=tenant.headers).json()
    assert got["status"] == "queued" and "carrier_sid" not in got


def test_leave_message_waits_for_the_greetings_end(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    line = calls_setup.line(
        client,
        stack,
        tenant,
        NUMBER,
        voicemail={"detect": True, "action": "leave_message", "message": "Call us back."},
    )
    made = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "to_number": CALLEE},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    dial_queue.drain(stack)
    assert carrier.placed[0].machine_detection_mode == "DetectMessageEnd"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (InvalidPhoneNumber("invalid 'To'", carrier_code=21211, param="to"), "failed"),
        (CarrierError("refused", carrier_code=13227), "failed"),
    ],
)
def test_a_carrier_refusal_ends_the_call_as_failed(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    carrier: FakeCarrier,
    error: CarrierError,
    reason: str,
) -> None:
    line = calls_setup.line(client, stack, tenant, NUMBER)
    made = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "to_number": CALLEE},
        headers=tenant.headers,
    ).json()
    carrier.fail_next_call = error
    dial_queue.drain(stack)
    got = client.get(f"/v1/calls/{made['id']}", headers=tenant.headers).json()
    assert (got["status"], got["outcome"], got["ended_reason"]) == ("ended", "failed", reason)
    assert got["error_message"] == error.message
    assert dial_queue.receive(stack) == []


def test_a_retryable_carrier_error_keeps_the_job_for_another_try(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    line = calls_setup.line(client, stack, tenant, NUMBER)
    made = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "to_number": CALLEE},
        headers=tenant.headers,
    ).json()
    body = dial_queue.receive(stack)[0][0]
    carrier.fail_next_call = CarrierError("busy carrier", retryable=True)
    # When the dialer meets it, Then the message fails (a one-message batch: the handler raises)
    with pytest.raises(BatchProcessingError):
        dial_queue.invoke(stack, body)
    # When the message comes back, Then the call is dialed (once)
    assert dial_queue.invoke(stack, body) == {"batchItemFailures": []}
    dial_queue.invoke(stack, body)
    assert len(carrier.placed) == 1
    assert client.get(f"/v1/calls/{made['id']}", headers=tenant.headers).json()["status"] == (
        "queued"
    )


def test_refusals_name_the_parameter(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    bare = calls_setup.assistant(client, tenant)
    line = calls_setup.line(client, stack, tenant, NUMBER)

    def place(**body: object) -> object:
        return client.post("/v1/calls", json=body, headers=tenant.headers)

    # No number to call from
    assert _error(place(assistant_id=bare, to_number=CALLEE)) == (
        409,
        "no_active_number",
        "phone_number_id",
    )
    # Invalid destination, both or neither destination
    assert _error(place(assistant_id=line.assistant_id, to_number="12")) == (
        422,
        "invalid_phone_number",
        "to_number",
    )
    assert place(assistant_id=line.assistant_id).status_code == 422  # type: ignore[attr-defined]
    # Unknown assistant / contact / caller ID
    assert _error(place(assistant_id="asst_01J0000000000000000000000A", to_number=CALLEE))[0] == 404
    assert _error(
        place(assistant_id=line.assistant_id, contact_id="ct_01J0000000000000000000000A")
    ) == (404, "resource_missing", "contact_id")
    # DNC contact, by id and by number
    dnc = client.post(
        "/v1/contacts",
        json={"first_name": "No", "phone": "+14155550188", "do_not_call": True},
        headers=tenant.headers,
    ).json()
    assert _error(place(assistant_id=line.assistant_id, contact_id=dnc["id"])) == (
        409,
        "contact_do_not_call",
        "contact_id",
    )
    assert _error(place(assistant_id=line.assistant_id, to_number="+14155550188"))[1] == (
        "contact_do_not_call"
    )
    # Outbound disabled
    client.patch(
        f"/v1/assistants/{line.assistant_id}",
        json={"telephony": {"outbound_enabled": False}},
        headers=tenant.headers,
    )
    assert _error(place(assistant_id=line.assistant_id, to_number=CALLEE)) == (
        422,
        "outbound_disabled",
        "assistant_id",
    )
    client.patch(
        f"/v1/assistants/{line.assistant_id}",
        json={"telephony": {"outbound_enabled": True}},
        headers=tenant.headers,
    )
    # No credits
    balance = credits.balance(tenant.account_id).balance
    credits.record(tenant.account_id, "usage", -balance, idempotency_key="drain")
    assert _error(place(assistant_id=line.assistant_id, to_number=CALLEE)) == (
        402,
        "insufficient_credits",
        None,
    )
    # And none of these made a call or a dial job
    assert client.get("/v1/calls", headers=tenant.headers).json()["data"] == []
    assert dial_queue.receive(stack) == []


def test_list_filters_and_pages_newest_first(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    line = calls_setup.line(client, stack, tenant, NUMBER)
    contact = client.post(
        "/v1/contacts", json={"first_name": "Ada", "phone": CALLEE}, headers=tenant.headers
    ).json()
    made = [
        client.post("/v1/calls", json=body, headers=tenant.headers).json()["id"]
        for body in (
            {"assistant_id": line.assistant_id, "to_number": "+14155550111"},
            {"assistant_id": line.assistant_id, "contact_id": contact["id"]},
            {"assistant_id": line.assistant_id, "to_number": "+14155550112"},
        )
    ]

    def ids(query: str) -> list[str]:
        answer = client.get(f"/v1/calls?{query}", headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        return [c["id"] for c in answer.json()["data"]]

    assert ids("") == made[::-1]
    assert ids(f"contact_id={contact['id']}") == [made[1]]
    assert ids(f"assistant_id={line.assistant_id}&contact_id={contact['id']}") == [made[1]]
    assert ids(f"phone_number_id={line.number_id}&direction=outbound") == made[::-1]
    assert ids("direction=inbound") == []
    assert ids("outcome=answered") == []
    assert ids("campaign_id=camp_x") == []
    past = (utcnow() - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    future = (utcnow() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"created_after={past}&created_before={future}") == made[::-1]
    assert ids(f"created_after={future}") == []
    assert ids(f"created_before={past}") == []
    first = client.get("/v1/calls?limit=2", headers=tenant.headers).json()
    assert first["has_more"] and len(first["data"]) == 2
    rest = client.get(
        f"/v1/calls?limit=2&starting_after={first['next_cursor']}", headers=tenant.headers
    ).json()
    assert [c["id"] for c in rest["data"]] == [made[0]] and not rest["has_more"]
    assert client.get("/v1/calls/call_nope", headers=tenant.headers).status_code == 404


def test_date_filters_take_only_iso_8601(client: TestClient, tenant: Tenant) -> None:
    for param in ("created_after", "created_before"):
        for value in ("0.5", "1e3", "1700000000", "tomorrow"):
            answer = client.get("/v1/calls", params={param: value}, headers=tenant.headers)
            assert answer.status_code == 422, (param, value, answer.json())
            assert answer.json()["error"]["param"] == param


def test_date_filters_mix_offsets_and_dates(client: TestClient, tenant: Tenant) -> None:
    # A date, and a date-time without an offset (UTC), beside one with an offset
    answer = client.get(
        "/v1/calls",
        params={"created_after": "2026-01-01", "created_before": "2026-01-02T10:00:00+02:00"},
        headers=tenant.headers,
    )
    assert answer.status_code == 200, answer.json()
    assert (
        client.get(
            "/v1/calls", params={"created_after": "2026-01-01T00:00:00"}, headers=tenant.headers
        ).status_code
        == 200
    )
