"""Who emits which customer event: calls (answered, over with the transcript), campaigns
(every status move), credits (once per drop below the threshold)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from talkturo.domain.calls import CallEvent, CallRecord, TranscriptMessage
from talkturo.domain.common import utcnow
from talkturo.domain.events import WebhookEndpointCreate
from talkturo.ids import new_id
from talkturo.local.template import Stack
from talkturo.services import calls, credits, events
from talkturo.store import calls as call_store
from tests.conftest import Tenant
from tests.integration import event_queue

pytestmark = pytest.mark.integration


def _endpoint(tenant: Tenant) -> str:
    made = events.create_endpoint(
        tenant.account_id, WebhookEndpointCreate(url="https://hooks.example.com/events")
    )
    return made.id


def _sent(tenant: Tenant, endpoint_id: str) -> list[dict[str, Any]]:
    """The events queued for the endpoint, oldest first."""
    return event_queue.emitted(tenant.account_id, endpoint_id)


def _call(tenant: Tenant) -> CallRecord:
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
    return record


def test_a_call_is_announced_when_answered_and_when_over_with_its_transcript(
    stack: Stack, tenant: Tenant
) -> None:
    endpoint = _endpoint(tenant)
    record = _call(tenant)
    # Answered (the media stream is up)
    calls.mark_connected(tenant.account_id, record.id)
    calls.mark_connected(tenant.account_id, record.id)  # again: no second event
    # The caller hangs up: the carrier's end comes before the session saved the transcript
    calls.record_event(
        tenant.account_id,
        record.id,
        CallEvent(at=utcnow(), status="ended", outcome="answered", ended_reason="caller_hung_up"),
    )
    assert [e["type"] for e in _sent(tenant, endpoint)] == ["call.started"]
    # The session saves and closes: now call.ended goes, with the transcript
    messages = [
        TranscriptMessage(role="user", text="my email is ada@example.com", start_ms=0, end_ms=900)
    ]
    calls.save_conversation(tenant.account_id, record.id, messages=messages, recording_wav=None)
    calls.close_session(
        tenant.account_id,
        record.id,
        stream_sid="MZ1",
        charge=Decimal(0),
        billed_seconds=4,
        recorded=False,
        bookings=[],
        end=None,
    )
    started, ended = _sent(tenant, endpoint)
    assert started["data"]["call"]["id"] == record.id
    assert started["data"]["call"]["status"] == "in_progress"
    assert ended["type"] == "call.ended"
    assert ended["data"]["call"]["status"] == "ended"
    assert [m["text"] for m in ended["data"]["transcript"]] == ["my email is ada@example.com"]
    assert ended["data"]["transcript_truncated"] is False


def test_a_call_that_never_connected_is_announced_ended_at_once(
    stack: Stack, tenant: Tenant
) -> None:
    endpoint = _endpoint(tenant)
    record = _call(tenant)
    calls.record_event(
        tenant.account_id,
        record.id,
        CallEvent(at=utcnow(), status="ended", outcome="no_answer", duration_seconds=0),
    )
    (ended,) = _sent(tenant, endpoint)
    assert ended["type"] == "call.ended" and ended["data"]["transcript"] == []


def test_a_campaign_move_is_announced(stack: Stack, tenant: Tenant) -> None:
    from talkturo.services import campaigns
    from tests.integration.test_tenant_isolation import _campaign

    endpoint = _endpoint(tenant)
    campaign_id = _campaign(tenant)
    campaigns.cancel(tenant.account_id, campaign_id)
    (moved,) = _sent(tenant, endpoint)
    assert moved["type"] == "campaign.status_changed"
    assert (moved["data"]["previous_status"], moved["data"]["status"]) == ("draft", "cancelled")
    assert moved["data"]["campaign"]["id"] == campaign_id


def test_credits_low_is_sent_once_per_drop(stack: Stack, tenant: Tenant) -> None:
    endpoint = _endpoint(tenant)

    def charge(amount: str, key: str) -> None:
        credits.record(tenant.account_id, "usage", Decimal(amount), idempotency_key=key)

    charge("-4", "u1")  # 10 → 6: above the threshold (5)
    assert _sent(tenant, endpoint) == []
    charge("-2", "u2")  # → 4: below
    charge("-1", "u3")  # → 3: still the same drop
    (low,) = _sent(tenant, endpoint)
    assert low["type"] == "credits.low"
    assert (low["data"]["balance"], low["data"]["threshold"]) == ("4.0000", "5.0000")
    credits.record(tenant.account_id, "grant", Decimal("10"), idempotency_key="g1")  # → 13
    charge("-9", "u4")  # → 4: a new drop
    assert [e["type"] for e in _sent(tenant, endpoint)] == ["credits.low", "credits.low"]
