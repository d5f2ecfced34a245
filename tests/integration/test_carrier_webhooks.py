"""Carrier webhooks through the Lambda entry: signatures, inbound answers, status callbacks."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkturo import config, tokens
from talkturo.carrier.factory import set_carrier
from talkturo.domain.common import utcnow
from talkturo.local.template import Stack
from talkturo.services import calls, credits
from talkturo.store import calls as call_store
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import calls_setup, carrier_events
from tests.integration.carrier_events import call as post

NUMBER = "+14155550140"
CALLER = "+14155550177"


@pytest.fixture
def carrier(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCarrier]:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", carrier_events.AUTH_TOKEN)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("VOICE_TOKEN_SECRET", "voice-secret")
    config.get_settings.cache_clear()
    fake = FakeCarrier()
    set_carrier(fake)
    yield fake
    set_carrier(None)
    config.get_settings.cache_clear()


def _inbound(sid: str = "CA" + "1" * 32, to: str = NUMBER) -> dict[str, str]:
    return {
        "CallSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": CALLER,
        "To": to,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }


def _calls(client: TestClient, tenant: Tenant) -> list[dict[str, Any]]:
    answer = client.get("/v1/calls", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def _said(body: str) -> str | None:
    root = ET.fromstring(body)
    say = root.find("./Say")
    return say.text if say is not None else None


# ------------------------------------------------------------------------- signatures


def test_a_valid_signature_is_accepted_and_anything_else_is_403(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    params = _inbound(to="+14155550000")  # nobody holds it: a "not available" answer
    # Given a correctly signed request, Then it is served
    assert post("voice", params)["statusCode"] == 200
    # When a parameter is changed after signing, Then 403
    signed = carrier_events.sign(f"https://{carrier_events.HOST}/carrier/voice", params)
    tampered = {**params, "From": "+14155550999"}
    assert post("voice", tampered, signature=signed)["statusCode"] == 403
    # When the header is missing, Then 403
    assert post("voice", params, signature=None)["statusCode"] == 403
    # When signed with another auth token, Then 403
    other = carrier_events.sign(f"https://{carrier_events.HOST}/carrier/voice", params, "nope")
    assert post("voice", params, signature=other)["statusCode"] == 403
    # When signed for http but received over https, Then 403
    http_url = f"http://{carrier_events.HOST}/carrier/voice"
    assert post("voice", params, signed_url=http_url)["statusCode"] == 403
    # And http signed for http is fine
    assert post("voice", params, proto="http", port="80")["statusCode"] == 200
    # And nothing was written by any of them
    assert _calls(client, tenant) == []


def test_ports_and_query_strings_are_part_of_the_signed_url(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    params = _inbound(to="+14155550000")
    # A non-default port is in the URL the carrier signed
    assert post("voice", params, port="8443")["statusCode"] == 200
    other_port = f"https://{carrier_events.HOST}:9443/carrier/voice"
    assert post("voice", params, port="8443", signed_url=other_port)["statusCode"] == 403
    # (Twilio's validator also accepts the URL without its port, as Twilio documents)
    no_port = f"https://{carrier_events.HOST}/carrier/voice"
    assert post("voice", params, port="8443", signed_url=no_port)["statusCode"] == 200
    # The default port may or may not be in the signed URL (Twilio's validator accepts both)
    with_port = f"https://{carrier_events.HOST}:443/carrier/voice"
    assert post("voice", params, signed_url=with_port)["statusCode"] == 200
    # The query string is signed: another one is refused
    query = "call=call_x&account=acct_x"
    assert post("status", params, query=query)["statusCode"] == 204
    signed_other = f"https://{carrier_events.HOST}/carrier/status?call=call_y&account=acct_x"
    answer = post("status", params, query=query, signed_url=signed_other)
    assert answer["statusCode"] == 403


# ------------------------------------------------------------------------- inbound


def test_inbound_to_an_unheld_or_unassigned_number_is_not_available(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    # Given a number held but not assigned
    calls_setup.assistant(client, tenant)
    bought = client.post("/v1/phone-numbers", json={"phone_number": NUMBER}, headers=tenant.headers)
    assert bought.status_code == 202
    from tests.integration import number_queue

    number_queue.drain(stack)
    for to in (NUMBER, "+14155550000"):
        # When someone calls it (or a number nobody holds)
        answer = post("voice", _inbound(to=to))
        # Then they hear "not available" and no call is recorded
        assert answer["statusCode"] == 200
        assert answer["headers"]["Content-Type"] == "application/xml"
        assert _said(answer["body"]) == "This number is not available right now. Goodbye."
        assert "<Hangup" in answer["body"]
    assert _calls(client, tenant) == []


def test_inbound_disabled_or_no_credits_is_not_available(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    line = calls_setup.line(client, stack, tenant, NUMBER)
    # Given inbound is disabled
    patched = client.patch(
        f"/v1/assistants/{line.assistant_id}",
        json={"telephony": {"inbound_enabled": False}},
        headers=tenant.headers,
    )
    assert patched.status_code == 200, patched.text
    answer = post("voice", _inbound())
    assert _said(answer["body"]) == "This number is not available right now. Goodbye."
    assert "<Stream" not in answer["body"]
    # Given inbound is enabled again but the balance is zero
    client.patch(
        f"/v1/assistants/{line.assistant_id}",
        json={"telephony": {"inbound_enabled": True}},
        headers=tenant.headers,
    )
    balance = credits.balance(tenant.account_id).balance
    credits.record(tenant.account_id, "usage", -balance, idempotency_key="drain")
    assert credits.balance(tenant.account_id).balance == Decimal(0)
    answer = post("voice", _inbound())
    assert "<Hangup" in answer["body"] and "<Stream" not in answer["body"]
    assert _calls(client, tenant) == []


def test_inbound_call_is_recorded_and_connected_to_the_voice_service(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    line = calls_setup.line(client, stack, tenant, NUMBER)
    contact = client.post(
        "/v1/contacts", json={"first_name": "Ada", "phone": CALLER}, headers=tenant.headers
    ).json()
    # When a caller dials the number
    answer = post("voice", _inbound())
    # Then the answer connects the call to the voice service with a token naming the call
    assert answer["statusCode"] == 200
    root = ET.fromstring(answer["body"])
    stream = root.find("./Connect/Stream")
    assert stream is not None and str(stream.get("url")).endswith("/media")
    token = root.find("./Connect/Stream/Parameter")
    assert token is not None and token.get("name") == "token"
    claims = tokens.verify(str(token.get("value")), "voice-secret")
    # And the call is recorded, ringing, linked to the caller's contact
    listed = _calls(client, tenant)
    assert len(listed) == 1
    got = listed[0]
    assert claims["call"] == got["id"] and claims["account"] == tenant.account_id
    assert got["direction"] == "inbound" and got["status"] == "ringing"
    assert got["assistant_id"] == line.assistant_id and got["phone_number_id"] == line.number_id
    assert got["contact_id"] == contact["id"] and got["from_number"] == CALLER
    assert "carrier_sid" not in got
    # And a retried voice webhook (same CallSid) creates nothing new
    assert post("voice", _inbound())["statusCode"] == 200
    assert len(_calls(client, tenant)) == 1


# ------------------------------------------------------------------------- callbacks


def _status(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "CallStatus": status, **extra}


def test_duplicated_and_reordered_callbacks_are_harmless(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    calls_setup.line(client, stack, tenant, NUMBER)
    sid = "CA" + "2" * 32
    post("voice", _inbound(sid))
    call_id = _calls(client, tenant)[0]["id"]
    # When the callbacks arrive out of order and twice
    for params in (
        _status(sid, "completed", CallDuration="31"),
        _status(sid, "in-progress"),
        _status(sid, "ringing"),
        _status(sid, "completed", CallDuration="99"),
        _status(sid, "busy"),
    ):
        assert post("status", params)["statusCode"] == 204
    # Then the call ended once, with the first end's outcome and duration
    got = client.get(f"/v1/calls/{call_id}", headers=tenant.headers).json()
    assert (got["status"], got["outcome"], got["duration_seconds"]) == ("ended", "answered", 31)
    assert got["ended_reason"] == "caller_hung_up" and got["ended_at"] is not None


def test_outbound_callbacks_name_the_call_in_their_query(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    calls_setup.line(client, stack, tenant, NUMBER)
    made = client.post(
        "/v1/calls",
        json={"assistant_id": calls_setup_assistant(client, tenant), "to_number": "+14155550199"},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    call_id = made.json()["id"]
    query = f"call={call_id}&account={tenant.account_id}"
    sid = "CA" + "3" * 32
    post("status", _status(sid, "in-progress"), query=query)
    post("amd", {"CallSid": sid, "AnsweredBy": "machine_end_beep"}, query=query)
    post("status", _status(sid, "completed", CallDuration="12"), query=query)
    got = client.get(f"/v1/calls/{call_id}", headers=tenant.headers).json()
    assert (got["outcome"], got["answered_by"], got["duration_seconds"]) == (
        "voicemail",
        "machine",
        12,
    )
    # And the voice URL answers the outbound call with its own stream until it ends
    assert "<Hangup" in post("voice", _status(sid, "in-progress"), query=query)["body"]


def calls_setup_assistant(client: TestClient, tenant: Tenant) -> str:
    listed = client.get("/v1/assistants", headers=tenant.headers).json()["data"]
    return str(listed[0]["id"])


# ------------------------------------------------------------------------- timeouts


def test_the_timeout_closer_ends_calls_whose_end_never_came(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    calls_setup.line(client, stack, tenant, NUMBER)
    post("voice", _inbound("CA" + "4" * 32))
    post("status", _status("CA" + "4" * 32, "in-progress"))
    post("voice", _inbound("CA" + "5" * 32))
    post("status", _status("CA" + "5" * 32, "completed", CallDuration="3"))
    stuck, done = sorted(_calls(client, tenant), key=lambda c: c["status"])[::-1]
    assert stuck["status"] == "in_progress" and done["status"] == "ended"
    # When the closer runs before the deadline, Then nothing happens
    assert calls.close_timed_out() == []
    # When it runs after the max duration plus the margin
    later = utcnow() + timedelta(hours=2)
    assert calls.close_timed_out(later) == [stuck["id"]]
    got = client.get(f"/v1/calls/{stuck['id']}", headers=tenant.headers).json()
    assert (got["status"], got["ended_reason"], got["outcome"]) == ("ended", "timeout", "answered")
    # And the open index no longer holds it: a second run closes nothing
    assert calls.close_timed_out(later) == []
    assert list(call_store.open_calls(later, later)) == []
