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


@pytest.fixture(autouse=True)
def _offline_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The analysis uses the offline stand-ins, as on the local platform."""
    monkeypatch.setenv("TALKTURO_OFFLINE_PROVIDERS", "1")


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


# --------------------------------------------------------------------------- analysis

EMAIL_TURN = "Sure, it is jane dot doe at example dot com."
ANALYSIS = {
    "success_rubric": {"type": "pass_fail"},
    "dispositions": ["booked", "not_interested"],
    "create_missing_fields": True,
    "extraction_fields": [
        {"key": "email", "description": "The caller's email address"},
        {
            "key": "meeting_day",
            "description": "The day the caller agreed to meet",
            "type": "date",
        },
        {"key": "job_title", "description": "The caller's job title"},
    ],
}


def _said(role: str, text: str, start: int) -> TranscriptMessage:
    return TranscriptMessage(role=role, text=text, start_ms=start, end_ms=start + 900)  # type: ignore[arg-type]


CONVERSATION = [
    _said("assistant", "Hi, this is Ada from Acme. Could I get your email address?", 0),
    _said("user", EMAIL_TURN, 1500),
    _said("assistant", "Thanks. Which day suits you for a meeting?", 3000),
    _said("user", "Next Tuesday works for me.", 4500),
    _said("assistant", "Great, see you then. Goodbye.", 6000),
]


def _contact_call(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    *,
    analysis: dict[str, object] = ANALYSIS,
    contact: dict[str, object] | None = None,
    messages: list[TranscriptMessage] = CONVERSATION,
    outcome: str = "answered",
) -> tuple[str, str, str]:
    """An ended call of an assistant with `analysis`, to a contact, with `messages` saved:
    (assistant id, call id, contact id)."""
    line = calls_setup.line(client, stack, tenant, NUMBER)
    patched = client.patch(
        f"/v1/assistants/{line.assistant_id}", json={"analysis": analysis}, headers=tenant.headers
    )
    assert patched.status_code == 200, patched.text
    made = client.post(
        "/v1/contacts",
        json={"first_name": "Jane", "phone": CALLEE, **(contact or {})},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    contact_id = made.json()["id"]
    placed = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "contact_id": contact_id},
        headers=tenant.headers,
    )
    assert placed.status_code == 201, placed.text
    dial_queue.drain(stack)
    call_id = placed.json()["id"]
    calls.mark_connected(tenant.account_id, call_id)
    calls.save_conversation(tenant.account_id, call_id, messages=messages, recording_wav=None)
    calls.close_session(
        tenant.account_id,
        call_id,
        stream_sid="MZ1",
        charge=Decimal(0),
        billed_seconds=7,
        recorded=False,
        bookings=[],
        end=None,
    )
    calls.record_event(
        tenant.account_id,
        call_id,
        CallEvent(
            at=utcnow(),
            status="ended",
            outcome=outcome,  # type: ignore[arg-type]
            ended_reason="assistant_ended",
            duration_seconds=7,
            answered_by="machine" if outcome == "voicemail" else "human",
        ),
    )
    return line.assistant_id, call_id, contact_id


def _run_job(stack: Stack, tenant: Tenant, call_id: str) -> None:
    assert post_call_queue.invoke(stack, _job(tenant, call_id)) == {"batchItemFailures": []}


def test_the_analysis_fills_the_contact_with_the_callers_words_once(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    _, call_id, contact_id = _contact_call(client, stack, tenant)
    # When the post-call job runs, and is delivered again
    _run_job(stack, tenant, call_id)
    _run_job(stack, tenant, call_id)
    # Then the analysis is version 1, offline, with a summary and a verdict
    got = client.get(f"/v1/calls/{call_id}/analysis", headers=tenant.headers)
    assert got.status_code == 200, got.text
    analysis = got.json()
    assert analysis["version"] == 1 and analysis["method"] == "offline"
    assert analysis["summary"] and analysis["trigger"] == "call_ended"
    # And the email and the meeting day were written with the caller's words
    changes = {c["key"]: c for c in analysis["crm_changes"]}
    assert changes["email"]["status"] == "written"
    assert changes["email"]["new"] == "jane.doe@example.com"
    assert changes["email"]["evidence"] == {"quote": EMAIL_TURN, "turn": 1}
    assert changes["meeting_day"]["status"] == "written"
    assert changes["meeting_day"]["field_created"] is True
    assert changes["job_title"]["status"] == "abstained"
    contact = client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers).json()
    assert contact["email"] == "jane.doe@example.com"
    assert contact["custom"]["meeting_day"] == changes["meeting_day"]["new"]
    # And the contact's activity says what changed, once, with the evidence
    activity = client.get(f"/v1/contacts/{contact_id}/activity", headers=tenant.headers).json()
    entries = [a for a in activity["data"] if a["type"] == "fields_updated"]
    assert len(entries) == 1 and entries[0]["call_id"] == call_id
    written = {c["field"]: c for c in entries[0]["changes"]}
    assert written["email"]["quote"] == EMAIL_TURN and written["email"]["old"] is None
    assert set(written) == {"email", "custom.meeting_day"}
    # And the call shows the analysis in brief, with its timing and cost
    call = client.get(f"/v1/calls/{call_id}", headers=tenant.headers).json()
    assert call["analysis"]["status"] == "completed" and call["analysis"]["version"] == 1
    assert call["analysis"]["fields_written"] == 2
    versions = client.get(f"/v1/calls/{call_id}/analyses", headers=tenant.headers).json()
    assert [v["version"] for v in versions["data"]] == [1]


def test_fill_if_empty_keeps_a_value_and_overwrite_replaces_it(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    analysis = {
        "extraction_fields": [
            {"key": "email", "description": "The caller's email address"},
        ]
    }
    _, call_id, contact_id = _contact_call(
        client, stack, tenant, analysis=analysis, contact={"email": "old@example.com"}
    )
    _run_job(stack, tenant, call_id)
    change = client.get(f"/v1/calls/{call_id}/analysis", headers=tenant.headers).json()
    assert change["crm_changes"][0]["status"] == "kept"
    contact = client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers).json()
    assert contact["email"] == "old@example.com"
    # When the policy becomes overwrite and the call is analysed again
    assistant_id = client.get(f"/v1/calls/{call_id}", headers=tenant.headers).json()["assistant_id"]
    overwrite = {
        "extraction_fields": [
            {"key": "email", "description": "The caller's email", "write_policy": "overwrite"}
        ]
    }
    patched = client.patch(
        f"/v1/assistants/{assistant_id}", json={"analysis": overwrite}, headers=tenant.headers
    )
    assert patched.status_code == 200, patched.text
    asked = client.post(f"/v1/calls/{call_id}/analyze", headers=tenant.headers)
    assert asked.status_code == 202, asked.text
    assert asked.json()["analysis"]["pending_version"] == 2
    post_call_queue.drain(stack)
    # Then version 2 replaced the email, and says how it differs
    second = client.get(f"/v1/calls/{call_id}/analysis", headers=tenant.headers).json()
    assert second["version"] == 2 and second["trigger"] == "reanalyze"
    assert second["crm_changes"][0]["status"] == "written"
    assert second["crm_changes"][0]["old"] == "old@example.com"
    assert isinstance(second["differences"], list)
    contact = client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers).json()
    assert contact["email"] == "jane.doe@example.com"
    call = client.get(f"/v1/calls/{call_id}", headers=tenant.headers).json()
    assert call["analysis"]["version"] == 2 and call["analysis"]["pending_version"] is None


def test_a_voicemail_is_summarised_but_nothing_is_extracted(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    greeting = [
        _said(
            "user", "Hi, you've reached Bob Smith at bob at example dot com. Leave a message.", 0
        ),
    ]
    _, call_id, contact_id = _contact_call(
        client, stack, tenant, messages=greeting, outcome="voicemail"
    )
    _run_job(stack, tenant, call_id)
    analysis = client.get(f"/v1/calls/{call_id}/analysis", headers=tenant.headers).json()
    assert analysis["skipped_extraction_reason"] == "voicemail"
    assert "bob" not in analysis["summary"].casefold()
    assert all(c["status"] == "abstained" for c in analysis["crm_changes"])
    contact = client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers).json()
    assert contact["email"] is None and "meeting_day" not in contact["custom"]


def test_without_a_model_key_the_analysis_fails_saying_why(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, call_id, _ = _contact_call(client, stack, tenant)
    monkeypatch.setenv("TALKTURO_OFFLINE_PROVIDERS", "0")
    _run_job(stack, tenant, call_id)  # not retried: trying again would not help
    brief = client.get(f"/v1/calls/{call_id}", headers=tenant.headers).json()["analysis"]
    assert brief["status"] == "failed" and "OPENAI_API_KEY" in brief["error"]
    missing = client.get(f"/v1/calls/{call_id}/analysis", headers=tenant.headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "analysis_not_ready"


def test_a_live_call_cannot_be_analysed_again(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    call_id = _connected_call(client, stack, tenant)
    refused = client.post(f"/v1/calls/{call_id}/analyze", headers=tenant.headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "call_not_ended"


def test_an_analysis_run_re_analyses_an_assistants_calls_with_progress(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    assistant_id, call_id, _ = _contact_call(client, stack, tenant)
    _run_job(stack, tenant, call_id)
    made = client.post(
        "/v1/analysis-runs", json={"assistant_id": assistant_id}, headers=tenant.headers
    )
    assert made.status_code == 202, made.text
    run_id = made.json()["id"]
    assert made.json()["status"] == "queued"
    # The listing page, then each call's job
    while post_call_queue.drain(stack):
        pass
    run = client.get(f"/v1/analysis-runs/{run_id}", headers=tenant.headers).json()
    assert run["status"] == "completed", run
    assert (run["calls_found"], run["calls_analyzed"], run["calls_failed"]) == (1, 1, 0)
    latest = client.get(f"/v1/calls/{call_id}/analysis", headers=tenant.headers).json()
    assert latest["version"] == 2 and latest["run_id"] == run_id
    # The fields were filled by version 1: the run keeps them (fill_if_empty)
    assert {c["status"] for c in latest["crm_changes"]} <= {"unchanged", "abstained", "kept"}
    both = client.post("/v1/analysis-runs", json={}, headers=tenant.headers)
    assert both.status_code == 422


def test_call_analyzed_is_emitted_once_per_version(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    from talkturo.domain.events import event_id
    from talkturo.store import events as event_store

    made = client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/talkturo", "event_types": ["call.analyzed"]},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    _, call_id, _ = _contact_call(client, stack, tenant)
    _run_job(stack, tenant, call_id)
    _run_job(stack, tenant, call_id)
    body = event_store.event_body(
        tenant.account_id, event_id(tenant.account_id, f"call.analyzed:{call_id}:1")
    )
    assert body is not None
    event = json.loads(body)
    assert event["type"] == "call.analyzed"
    assert event["data"]["analysis"]["version"] == 1
    assert event["data"]["call"]["analysis"]["status"] == "completed"
    deliveries = client.get(
        f"/v1/webhook-endpoints/{made.json()['id']}/deliveries", headers=tenant.headers
    ).json()["data"]
    assert [d["event_type"] for d in deliveries].count("call.analyzed") == 1
