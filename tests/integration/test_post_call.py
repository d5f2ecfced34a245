"""The post-call worker: settlement of calls whose voice session died, the call's timing and
cost (driven through the deployed handler, as Lambda runs it)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from fastapi.testclient import TestClient

from talkturo.domain.calls import CallEvent, TranscriptMessage
from talkturo.domain.common import utcnow
from talkturo.local.template import Stack
from talkturo.services import calls, credits, post_call
from talkturo.store import ledger
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import calls_setup, dial_queue, post_call_queue

NUMBER = "+14155550160"
CALLEE = "+14155550161"


def _connected_call(client: TestClient, stack: Stack, tenant: Tenant) -> str:
    line = calls_setup.line(client, stack, tenant, NUMBER)
    made = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "to_number": CALLEE},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    dial_queue.drain(stack)
    call_id = str(made.json()["id"])
    calls.mark_connected(tenant.account_id, call_id)
    return call_id


def _end(tenant: Tenant, call_id: str, *, seconds: int, ago: int) -> None:
    calls.record_event(
        tenant.account_id,
        call_id,
        CallEvent(
            at=utcnow() - timedelta(seconds=ago),
            status="ended",
            outcome="answered",
            ended_reason="caller_hung_up",
            duration_seconds=seconds,
        ),
    )


def _job(tenant: Tenant, call_id: str) -> str:
    return json.dumps({"account_id": tenant.account_id, "call_id": call_id})


def _ledger_total(tenant: Tenant, call_id: str) -> Decimal:
    return -sum((e.amount for e in ledger.call_entries(tenant.account_id, call_id)), Decimal(0))


def test_a_call_whose_voice_session_died_is_settled_once_from_the_carrier_duration(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    call_id = _connected_call(client, stack, tenant)
    # Given a voice session that drew two 10 s blocks, then died without settling
    block = Decimal("0.2000")
    for n in range(2):
        credits.record(
            tenant.account_id,
            "usage",
            -block,
            idempotency_key=f"call:{call_id}:MZdead:usage:{n}",
            reference=call_id,
        )
    before = credits.balance(tenant.account_id).balance
    # And the carrier reported 95 s, three minutes ago
    _end(tenant, call_id, seconds=95, ago=180)
    # When its post-call job runs, twice
    assert post_call_queue.invoke(stack, _job(tenant, call_id)) == {"batchItemFailures": []}
    assert post_call_queue.invoke(stack, _job(tenant, call_id)) == {"batchItemFailures": []}
    # Then the call is billed the carrier's 95 s once, what the session drew included
    got = client.get(f"/v1/calls/{call_id}", headers=tenant.headers).json()
    assert got["settled_by"] == "carrier" and got["billed_seconds"] == 95
    charged = Decimal(got["credits_charged"])
    assert charged == _ledger_total(tenant, call_id)
    assert charged > 2 * block
    assert credits.balance(tenant.account_id).balance == before - (charged - 2 * block)
    # And its cost is split by layer, adding up to the charge
    cost = got["cost"]
    parts = ("telephony", "transcriber", "llm", "voice", "platform", "analysis")
    assert sum(Decimal(cost[p]) for p in parts) == Decimal(cost["total"]) == charged


def test_a_session_that_may_still_be_saving_is_waited_for(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    call_id = _connected_call(client, stack, tenant)
    _end(tenant, call_id, seconds=30, ago=5)
    # When the job runs moments after the end, it is handed back (delivered again later)
    with pytest.raises(BatchProcessingError, match="may still be saving"):
        post_call_queue.invoke(stack, _job(tenant, call_id))
    assert _ledger_total(tenant, call_id) == 0
    # And when the session then closes, its charge is the call's: nothing settled twice
    calls.close_session(
        tenant.account_id,
        call_id,
        stream_sid="MZlive",
        charge=Decimal(0),
        billed_seconds=0,
        recorded=False,
        bookings=[],
        end=None,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(post_call, "utcnow", lambda: utcnow() + timedelta(minutes=10))
        assert post_call_queue.invoke(stack, _job(tenant, call_id)) == {"batchItemFailures": []}
    got = client.get(f"/v1/calls/{call_id}", headers=tenant.headers).json()
    assert got["settled_by"] == "voice_session"
    assert _ledger_total(tenant, call_id) == 0


def test_the_call_gets_its_conversation_timing(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    call_id = _connected_call(client, stack, tenant)

    def said(role: str, text: str, start: int, end: int, **extra: object) -> TranscriptMessage:
        return TranscriptMessage(role=role, text=text, start_ms=start, end_ms=end, **extra)  # type: ignore[arg-type]

    messages = [
        said("assistant", "Hello, this is Ada.", 0, 1500),
        said("user", "Hi, I would like a meeting.", 2000, 4000),
        said("assistant", "Sure, when suits you?", 4600, 6000, interrupted=True),
        said("user", "Tuesday.", 6200, 7000),
        said("assistant", "Tuesday it is.", 8000, 9000),
    ]
    calls.save_conversation(tenant.account_id, call_id, messages=messages, recording_wav=None)
    calls.close_session(
        tenant.account_id,
        call_id,
        stream_sid="MZ1",
        charge=Decimal(0),
        billed_seconds=9,
        recorded=False,
        bookings=[],
        end=None,
    )
    _end(tenant, call_id, seconds=9, ago=1)
    assert post_call_queue.invoke(stack, _job(tenant, call_id)) == {"batchItemFailures": []}
    metrics = client.get(f"/v1/calls/{call_id}", headers=tenant.headers).json()["metrics"]
    assert metrics["caller_turns"] == 2 and metrics["assistant_turns"] == 3
    assert metrics["turn_latency_p50_ms"] == 600 and metrics["turn_latency_p95_ms"] == 1000
    assert metrics["interruptions"] == 1
    assert metrics["caller_talk_ms"] == 2800 and metrics["assistant_talk_ms"] == 3900
    assert metrics["talk_listen_ratio"] == 1.39
