"""The campaign engine on the emulator: audience, dispatch under the limits, call ends, retries,
DNC after launch, pause and resume, crashes and lost events, the lifecycle's refusals."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from talkturo import config
from talkturo.domain.calls import CallEvent, DialJob, event_of_twilio
from talkturo.domain.common import utcnow
from talkturo.local.template import Stack
from talkturo.services import calls, campaigns, credits
from talkturo.store import accounts as account_store
from talkturo.store import campaigns as campaign_store
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import calls_setup, dial_queue
from tests.integration.lambda_worker import SqsWorker
from tests.zones import awake_zone

pytestmark = pytest.mark.integration

NUMBER = "+14155550140"
SECOND_NUMBER = "+14155550141"
_campaign_worker = SqsWorker("campaigns", "CampaignQueue")


@pytest.fixture(autouse=True)
def fast_dials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No pacing delay and retries at once: the tests drive time themselves."""
    monkeypatch.setenv("TALKTURO_DIAL_CALLS_PER_SECOND", "100")
    monkeypatch.setenv("TALKTURO_CAMPAIGN_DELAY_SCALE", "0")
    config.get_settings.cache_clear()
    yield
    config.get_settings.cache_clear()


def pump(stack: Stack) -> None:
    """Deliver campaign and dial jobs until both queues are empty."""
    for _ in range(100):
        handled = _campaign_worker.deliver_waiting(stack, strict=True)
        handled += dial_queue.drain(stack)
        if not handled:
            return
    raise AssertionError("the queues never emptied")


def call_ids(carrier: FakeCarrier) -> list[str]:
    return [parse_qs(urlsplit(p.answer_url).query)["call"][0] for p in carrier.placed]


def end(tenant: Tenant, call_id: str, status: str, *, answered_by: str | None = None) -> None:
    """The carrier's final status callback for the call (`completed`, `no-answer`, `busy` …)."""
    calls.record_event(tenant.account_id, call_id, CallEvent(at=utcnow(), status="ringing"))
    event = event_of_twilio(status, at=utcnow(), duration="12", answered_by=answered_by)
    calls.record_event(tenant.account_id, call_id, event)


def contacts(client: TestClient, tenant: Tenant, count: int, **extra: Any) -> list[str]:
    zone = awake_zone()
    made = []
    for index in range(count):
        body = {
            "first_name": f"Person{index}",
            "phone": f"+1415555{1000 + index:04d}",
            "timezone": zone,
            "tags": ["launch"],
            **extra,
        }
        answer = client.post("/v1/contacts", json=body, headers=tenant.headers)
        assert answer.status_code == 201, answer.text
        made.append(answer.json()["id"])
    return made


def create(client: TestClient, tenant: Tenant, assistant_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "Spring launch",
        "assistant_id": assistant_id,
        "audience": {"type": "filter", "tag": "launch"},
        "call_window": {"allow_anytime": True},
        **fields,
    }
    answer = client.post("/v1/campaigns", json=body, headers=tenant.headers)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def read(client: TestClient, tenant: Tenant, campaign_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/campaigns/{campaign_id}", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def action(client: TestClient, tenant: Tenant, campaign_id: str, verb: str) -> Any:
    return client.post(f"/v1/campaigns/{campaign_id}/{verb}", headers=tenant.headers)


def member(client: TestClient, tenant: Tenant, campaign_id: str, contact_id: str) -> Any:
    answer = client.get(
        f"/v1/campaigns/{campaign_id}/contacts/{contact_id}", headers=tenant.headers
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
def line(client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier) -> Any:
    return calls_setup.line(client, stack, tenant, NUMBER)


# --------------------------------------------------------------------------- audience


def test_the_audience_is_gathered_with_skips_counted_by_reason(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any
) -> None:
    contacts(client, tenant, 3)
    client.post(
        "/v1/contacts",
        json={"first_name": "Nophone", "email": "n@example.com", "tags": ["launch"]},
        headers=tenant.headers,
    )
    client.post(
        "/v1/contacts",
        json={
            "first_name": "Dnc",
            "phone": "+14155559999",
            "tags": ["launch"],
            "do_not_call": True,
        },
        headers=tenant.headers,
    )
    contacts_elsewhere = client.post(
        "/v1/contacts",
        json={"first_name": "Other", "phone": "+14155558888"},
        headers=tenant.headers,
    )
    assert contacts_elsewhere.status_code == 201
    made = create(client, tenant, line.assistant_id)
    assert made["status"] == "draft" and made["audience_status"] == "building"
    assert made["phone_number_ids"] == [line.number_id]
    pump(stack)
    shown = read(client, tenant, made["id"])
    assert shown["audience_status"] == "ready"
    assert shown["audience_total"] == 5
    assert shown["counts"]["pending"] == 3 and shown["counts"]["skipped"] == 2
    assert shown["skipped"] == {
        "dnc": 1,
        "no_phone": 1,
        "outside_compliance": 0,
        "invalid_number": 0,
    }
    every = client.get("/v1/campaigns", headers=tenant.headers).json()
    assert [c["id"] for c in every["data"]] == [made["id"]]
    running = client.get("/v1/campaigns?status=running", headers=tenant.headers).json()
    assert running["data"] == []
    listed = client.get(
        f"/v1/campaigns/{made['id']}/contacts?state=skipped", headers=tenant.headers
    ).json()
    assert sorted(c["skip_reason"] for c in listed["data"]) == ["dnc", "no_phone"]


def test_bad_settings_are_refused_naming_the_field(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any
) -> None:
    base = {"name": "x", "assistant_id": line.assistant_id}
    cases = [
        ({**base, "audience": {"type": "company"}}, "audience"),
        (
            {**base, "audience": {"type": "filter"}, "max_concurrent_calls": 11},
            "max_concurrent_calls",
        ),
        (
            {**base, "audience": {"type": "filter"}, "call_window": {"timezone": "Mars/Base"}},
            "call_window.timezone",
        ),
        (
            {**base, "audience": {"type": "filter"}, "phone_number_ids": ["pn_nope"]},
            "phone_number_ids[0]",
        ),
    ]
    for body, param in cases:
        answer = client.post("/v1/campaigns", json=body, headers=tenant.headers)
        assert answer.status_code == 422, (param, answer.text)
        assert answer.json()["error"]["param"] == param
    missing = client.post(
        "/v1/campaigns",
        json={**base, "audience": {"type": "company", "company_id": "co_nope"}},
        headers=tenant.headers,
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "audience.company_id"


def test_an_audience_that_cannot_be_built_fails_and_the_campaign_cannot_start(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any
) -> None:
    contacts(client, tenant, 1)
    made = create(client, tenant, line.assistant_id)
    # The build job failed every delivery: the dead-letter worker ends the audience.
    from talkturo.services import dead_letters

    job = {"type": "build", "account_id": tenant.account_id, "campaign_id": made["id"]}
    outcome = dead_letters._end("campaign", json.dumps(job))
    assert outcome.action == "ended"
    assert read(client, tenant, made["id"])["audience_status"] == "failed"
    refused = action(client, tenant, made["id"], "start")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "audience_failed"


def test_an_audience_whose_first_job_cannot_be_queued_fails_visibly(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botocore.exceptions import EndpointConnectionError

    from talkturo.domain.campaigns import CampaignCreate

    contacts(client, tenant, 1)

    def queue_down(*args: Any, **kwargs: Any) -> None:
        raise EndpointConnectionError(endpoint_url="http://queue")

    monkeypatch.setattr(campaigns.queues, "send", queue_down)
    request = CampaignCreate.model_validate(
        {"name": "x", "assistant_id": line.assistant_id, "audience": {"type": "filter"}}
    )
    with pytest.raises(EndpointConnectionError):
        campaigns.create(tenant.account_id, request)
    monkeypatch.undo()
    [made] = client.get("/v1/campaigns", headers=tenant.headers).json()["data"]
    # Not `building` forever: failed, so start says why, and the draft can be deleted.
    assert made["audience_status"] == "failed"
    refused = action(client, tenant, made["id"], "start")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "audience_failed"
    assert client.delete(f"/v1/campaigns/{made['id']}", headers=tenant.headers).status_code == 200


def _partition(tenant: Tenant, campaign_id: str) -> list[str]:
    """The sort keys left in the campaign's contacts partition."""
    from talkturo.store.table import Item, connection

    connection()
    pk = campaign_store.contacts_partition(tenant.account_id, campaign_id)
    return [str(item.sk) for item in Item.query(pk)]


def test_a_deleted_campaign_s_contacts_are_removed_in_the_background_page_by_page(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contacts(client, tenant, 5)
    made = create(client, tenant, line.assistant_id)
    pump(stack)
    assert len(_partition(tenant, made["id"])) == 5
    monkeypatch.setattr(campaigns, "PURGE_PAGE", 2)
    sent: list[dict[str, Any]] = []
    real_send = campaigns.queues.send

    def counting(url: str, body: dict[str, Any], **kwargs: Any) -> None:
        sent.append(body)
        real_send(url, body, **kwargs)

    monkeypatch.setattr(campaigns.queues, "send", counting)

    deleted = client.delete(f"/v1/campaigns/{made['id']}", headers=tenant.headers)

    assert deleted.status_code == 200
    assert client.get(f"/v1/campaigns/{made['id']}", headers=tenant.headers).status_code == 404
    assert len(_partition(tenant, made["id"])) == 5  # not in the request: in the background
    pump(stack)
    assert _partition(tenant, made["id"]) == []
    # Two contacts a job: 2 + 2 + 1, each job queueing the next.
    assert [b["type"] for b in sent] == ["purge"] * 3
    # A redelivered job finds nothing more to do and queues nothing.
    campaigns.handle_job(sent[0])
    assert len(sent) == 3
    # One that kept failing is recorded as such.
    from talkturo.services import dead_letters

    outcome = dead_letters._end("campaign", json.dumps(sent[0]))
    assert outcome.action == "recorded"
    assert outcome.reason.startswith("the deleted campaign's contacts were not all removed")


def test_a_campaign_whose_calls_are_still_live_is_deleted_only_once_they_end(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    contacts(client, tenant, 2)
    made = create(client, tenant, line.assistant_id)
    pump(stack)
    action(client, tenant, made["id"], "start")
    pump(stack)
    assert action(client, tenant, made["id"], "cancel").json()["status"] == "cancelled"

    refused = client.delete(f"/v1/campaigns/{made['id']}", headers=tenant.headers)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "campaign_not_deletable"
    assert "live" in refused.json()["error"]["message"]
    end(tenant, call_ids(carrier)[0], "completed")
    pump(stack)
    assert client.delete(f"/v1/campaigns/{made['id']}", headers=tenant.headers).status_code == 200
    pump(stack)
    assert _partition(tenant, made["id"]) == []
    # The account's admissions were all given back: another campaign can call at once.
    slots = campaign_store._account_slots(tenant.account_id)
    slots.refresh(consistent_read=True)
    assert int(slots.in_flight or 0) == 0


# --------------------------------------------------------------------------- dispatch


def test_dials_never_exceed_the_limit_even_with_racing_dispatches(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    contacts(client, tenant, 8)
    made = create(client, tenant, line.assistant_id, max_concurrent_calls=3)
    pump(stack)
    assert action(client, tenant, made["id"], "start").json()["status"] == "running"
    threads = [
        threading.Thread(target=campaigns.dispatch, args=(tenant.account_id, made["id"]))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pump(stack)
    assert len(carrier.placed) == 3
    progress = client.get(f"/v1/campaigns/{made['id']}/progress", headers=tenant.headers).json()
    assert progress["in_flight"] == 3 and progress["max_concurrent_calls"] == 3
    assert progress["counts"]["queued"] == 3 and progress["counts"]["pending"] == 5
    assert len(progress["queue"]) == 5 and len(progress["recent_calls"]) == 3
    # Each ended call frees its slot for the next contact, never more than three at a time.
    seen = set()
    while True:
        live = [c for c in call_ids(carrier) if c not in seen]
        if not live:
            break
        assert len(live) <= 3
        for call_id in live:
            seen.add(call_id)
            end(tenant, call_id, "completed")
        pump(stack)
    assert len(carrier.placed) == 8
    shown = read(client, tenant, made["id"])
    assert shown["status"] == "completed"
    assert shown["counts"]["completed"] == 8 and shown["outcomes"]["answered"] == 8
    assert shown["answer_rate"] == 1.0 and shown["completion_rate"] == 1.0
    # The assistant is free again: nothing runs with it.
    assert client.delete(
        f"/v1/phone-numbers/{line.number_id}/assign", headers=tenant.headers
    ).status_code in (200, 404, 405)


def launched(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, count: int, limit: int
) -> str:
    """A running campaign of `count` contacts at `limit` calls; its kick stays queued."""
    contacts(client, tenant, count)
    made = create(client, tenant, line.assistant_id, max_concurrent_calls=limit)
    pump(stack)
    action(client, tenant, made["id"], "start")
    return str(made["id"])


def all_at_once(work: Any, count: int) -> list[Any]:
    """`work()` in `count` threads let go together; what each returned."""
    results: list[Any] = []
    go = threading.Barrier(count, timeout=30)

    def run() -> None:
        go.wait()
        results.append(work())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_round_claims_its_free_slots_side_by_side_and_fills_every_one(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limit = 10
    campaign_id = launched(client, stack, tenant, line, 16, limit)
    # The head of the queue is marked DNC after launch: those claims skip, others take their place.
    head = campaign_store.due(tenant.account_id, campaign_id, utcnow(), 3)
    for skipped, _ in head:
        answer = client.patch(
            f"/v1/contacts/{skipped.contact_id}", json={"do_not_call": True}, headers=tenant.headers
        )
        assert answer.status_code == 200
    # Every claim waits until `limit` claims are under way at once: claims made one after
    # another would never get there (the barrier breaks and the claims raise).
    together = threading.Barrier(limit, timeout=30)
    real_claim = campaign_store.claim

    def claim(account_id: str, **fields: Any) -> bool:
        together.wait()
        return real_claim(account_id, **fields)

    monkeypatch.setattr(campaign_store, "claim", claim)

    assert campaigns.dispatch(tenant.account_id, campaign_id) == limit

    monkeypatch.setattr(campaign_store, "claim", real_claim)
    pump(stack)
    assert len(carrier.placed) == limit
    assert len(set(call_ids(carrier))) == limit
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == limit
    shown = read(client, tenant, campaign_id)
    assert shown["counts"]["queued"] + shown["counts"]["calling"] == limit
    assert shown["counts"]["skipped"] == 3 and shown["counts"]["pending"] == 3
    dialled = {calls.get(tenant.account_id, c).contact_id for c in call_ids(carrier)}
    assert not dialled & {skipped.contact_id for skipped, _ in head}


def test_rounds_racing_without_the_turn_never_claim_above_the_limit(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    """Rounds run at once (the turn left out), each claiming side by side: only the admission
    counter stands between them and the limit."""
    limit = 6
    campaign_id = launched(client, stack, tenant, line, 20, limit)

    placed = all_at_once(lambda: campaigns._fill(tenant.account_id, campaign_id, None, {}), 4)

    assert sum(placed) == limit
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == limit
    pump(stack)
    assert len(carrier.placed) == limit


def test_dials_racing_for_the_pace_each_get_their_own_moment(tenant: Tenant) -> None:
    now_ms = campaigns._now_ms()
    interval = 1000

    moments = all_at_once(
        lambda: campaign_store.reserve_dial_time(tenant.account_id, now_ms, interval), 8
    )

    assert sorted(moments) == [now_ms + n * interval for n in range(8)]


def refilled_after(
    client: TestClient, tenant: Tenant, carrier: FakeCarrier, campaign_id: str, ended: str
) -> None:
    """The one-slot campaign's call `ended` is applied and the next contact is being called."""
    assert len(carrier.placed) == 2
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 1
    contact_id = calls.get(tenant.account_id, ended).contact_id
    assert member(client, tenant, campaign_id, contact_id)["state"] == "completed"


def test_a_call_s_end_refills_its_slot_in_the_carrier_s_callback(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    campaign_id = launched(client, stack, tenant, line, 3, 1)
    pump(stack)
    (first,) = call_ids(carrier)

    end(tenant, first, "completed")

    # No campaign job was needed: the callback gave the slot back and claimed the next contact.
    assert _campaign_worker.deliver_waiting(stack, strict=True) == []
    dial_queue.drain(stack)
    refilled_after(client, tenant, carrier, campaign_id, first)


def test_a_call_end_the_callback_cannot_apply_is_left_to_the_campaign_queue(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    campaign_id = launched(client, stack, tenant, line, 2, 1)
    pump(stack)
    (first,) = call_ids(carrier)
    real_dispatch = campaigns.dispatch

    def broken(*args: Any, **options: Any) -> int:
        raise campaign_store.Contention  # after the slot was given back: the kick refills

    monkeypatch.setattr(campaigns, "_hand_over", lambda *args: ("lost", 1))  # the handover lost
    monkeypatch.setattr(campaigns, "dispatch", broken)
    end(tenant, first, "completed")
    assert len(carrier.placed) == 1
    monkeypatch.setattr(campaigns, "dispatch", real_dispatch)

    pump(stack)
    refilled_after(client, tenant, carrier, campaign_id, first)


def test_a_dispatch_asked_for_while_another_runs_makes_that_one_run_once_more(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contacts(client, tenant, 4)
    made = create(client, tenant, line.assistant_id, max_concurrent_calls=4)
    pump(stack)
    action(client, tenant, made["id"], "start")  # its kick stays queued: the test dispatches
    rounds: list[int] = []
    real_fill = campaigns._fill

    def fill(account_id: str, campaign_id: str, campaign: Any, kept: Any) -> int:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            # Another worker asks for a dispatch while this one runs: it returns at once...
            assert campaigns.dispatch(account_id, campaign_id) == 0
            return 0
        return int(real_fill(account_id, campaign_id, campaign, kept))

    monkeypatch.setattr(campaigns, "_fill", fill)

    placed = campaigns.dispatch(tenant.account_id, made["id"])

    # ...and the one running ran a second round for it, which placed the calls.
    assert rounds == [0, 1] and placed == 4
    pump(stack)
    assert len(carrier.placed) == 4


def test_a_dispatch_turn_left_by_a_crash_is_taken_again_once_its_lease_ran_out(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    contacts(client, tenant, 2)
    made = create(client, tenant, line.assistant_id, max_concurrent_calls=2)
    pump(stack)
    action(client, tenant, made["id"], "start")  # its kick stays queued: the test dispatches
    now_ms = campaigns._now_ms()
    # A dispatch that is still within its lease holds the turn: nothing is dialled twice.
    assert campaign_store.take_turn(tenant.account_id, made["id"], "alive", now_ms, 60_000) == 1
    assert campaigns.dispatch(tenant.account_id, made["id"]) == 0
    campaign_store.drop_turn(tenant.account_id, made["id"], "alive")
    # One whose lease ran out (its worker died) no longer does.
    lease = campaigns.TURN_LEASE_MS
    taken = campaign_store.take_turn(
        tenant.account_id, made["id"], "crashed", now_ms - lease - 1, lease
    )
    assert taken is not None
    assert campaigns.dispatch(tenant.account_id, made["id"]) == 2
    pump(stack)
    assert len(carrier.placed) == 2


def test_outcomes_retry_with_the_same_caller_id_until_exhausted(
    client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier
) -> None:
    account = account_store.get_account(tenant.account_id)
    account_store.save_account(account.model_copy(update={"plan": "paid"}))  # two numbers
    first = calls_setup.line(client, stack, tenant, NUMBER)
    second = client.post(
        "/v1/phone-numbers", json={"phone_number": SECOND_NUMBER}, headers=tenant.headers
    ).json()
    from tests.integration import number_queue

    number_queue.drain(stack)
    client.post(
        f"/v1/phone-numbers/{second['id']}/assign",
        json={"assistant_id": first.assistant_id},
        headers=tenant.headers,
    )
    people = contacts(client, tenant, 2)
    made = create(
        client,
        tenant,
        first.assistant_id,
        max_concurrent_calls=2,
        max_attempts=2,
        retry={"outcomes": ["no_answer", "busy"]},
    )
    assert sorted(made["phone_number_ids"]) == sorted([first.number_id, second["id"]])
    pump(stack)
    action(client, tenant, made["id"], "start")
    pump(stack)
    # Numbers rotate across contacts.
    assert {p.from_ for p in carrier.placed} == {NUMBER, SECOND_NUMBER}
    by_contact = {}
    for call_id in call_ids(carrier):
        record = calls.get(tenant.account_id, call_id)
        by_contact[record.contact_id] = record
    end(tenant, by_contact[people[0]].id, "no-answer")
    end(tenant, by_contact[people[1]].id, "busy")
    pump(stack)
    assert len(carrier.placed) == 4
    for contact_id in people:
        seen = member(client, tenant, made["id"], contact_id)
        assert seen["attempts"] == 2 and seen["state"] == "queued"
        # A contact keeps its caller ID across retries.
        numbers = {calls.get(tenant.account_id, a["call_id"]).from_number for a in seen["history"]}
        assert len(numbers) == 1
        assert [a["attempt"] for a in seen["history"]] == [1, 2]
        assert "attempt 2 of 2" in seen["history"][1]["rule"]
        assert "federal 08:00-21:00" in seen["history"][1]["rule"]
    for call_id in call_ids(carrier)[2:]:
        end(tenant, call_id, "no-answer")
    pump(stack)
    assert len(carrier.placed) == 4  # no third attempt
    shown = read(client, tenant, made["id"])
    assert shown["status"] == "completed"
    assert shown["counts"]["exhausted"] == 2
    assert shown["outcomes"]["no_answer"] == 3 and shown["outcomes"]["busy"] == 1


def test_a_contact_marked_dnc_after_launch_is_never_dialled(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    people = contacts(client, tenant, 2)
    made = create(client, tenant, line.assistant_id)
    pump(stack)
    action(client, tenant, made["id"], "start")
    pump(stack)
    assert len(carrier.placed) == 1
    waiting = (
        people[1]
        if calls.get(tenant.account_id, call_ids(carrier)[0]).contact_id == people[0]
        else people[0]
    )
    patched = client.patch(
        f"/v1/contacts/{waiting}", json={"do_not_call": True}, headers=tenant.headers
    )
    assert patched.status_code == 200
    end(tenant, call_ids(carrier)[0], "completed")
    pump(stack)
    assert len(carrier.placed) == 1
    seen = member(client, tenant, made["id"], waiting)
    assert seen["state"] == "skipped" and seen["skip_reason"] == "dnc"
    assert read(client, tenant, made["id"])["status"] == "completed"


def test_pause_stops_new_dials_and_live_calls_finish_then_resume_goes_on(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    contacts(client, tenant, 3)
    made = create(client, tenant, line.assistant_id)
    pump(stack)
    action(client, tenant, made["id"], "start")
    pump(stack)
    assert action(client, tenant, made["id"], "pause").json()["status"] == "paused"
    live = call_ids(carrier)[0]
    calls.record_event(tenant.account_id, live, CallEvent(at=utcnow(), status="in_progress"))
    pump(stack)
    answered = calls.get(tenant.account_id, live).contact_id
    assert member(client, tenant, made["id"], answered)["state"] == "calling"
    end(tenant, live, "completed")
    pump(stack)
    campaigns.tick()
    pump(stack)
    assert len(carrier.placed) == 1
    paused = read(client, tenant, made["id"])
    assert paused["counts"]["completed"] == 1 and paused["status"] == "paused"
    assert action(client, tenant, made["id"], "resume").json()["status"] == "running"
    pump(stack)
    assert len(carrier.placed) == 2


def test_illegal_moves_and_edits_are_refused_with_the_current_status(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    contacts(client, tenant, 2)
    made = create(client, tenant, line.assistant_id)
    pump(stack)
    paused = action(client, tenant, made["id"], "pause")
    assert paused.status_code == 409
    assert paused.json()["error"]["code"] == "invalid_campaign_transition"
    assert "draft" in paused.json()["error"]["message"]
    action(client, tenant, made["id"], "start")
    edit = client.patch(
        f"/v1/campaigns/{made['id']}", json={"max_attempts": 5}, headers=tenant.headers
    )
    assert edit.status_code == 409 and edit.json()["error"]["param"] == "max_attempts"
    renamed = client.patch(
        f"/v1/campaigns/{made['id']}", json={"name": "Renamed"}, headers=tenant.headers
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed"
    gone = client.delete(f"/v1/assistants/{line.assistant_id}", headers=tenant.headers)
    assert gone.status_code == 409
    released = client.delete(f"/v1/phone-numbers/{line.number_id}", headers=tenant.headers)
    assert released.status_code == 409
    assert released.json()["error"]["code"] == "number_in_use_by_campaign"
    deleted = client.delete(f"/v1/campaigns/{made['id']}", headers=tenant.headers)
    assert deleted.status_code == 409
    assert action(client, tenant, made["id"], "cancel").json()["status"] == "cancelled"
    again = action(client, tenant, made["id"], "resume")
    assert again.status_code == 409 and "cancelled" in again.json()["error"]["message"]


def test_no_credits_pause_the_campaign_and_resume_is_refused_until_there_are(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    contacts(client, tenant, 2)
    made = create(client, tenant, line.assistant_id)
    pump(stack)
    action(client, tenant, made["id"], "start")
    pump(stack)
    balance = credits.balance(tenant.account_id).balance
    credits.record(tenant.account_id, "usage", -balance, idempotency_key="test:drain")
    end(tenant, call_ids(carrier)[0], "completed")
    pump(stack)
    shown = read(client, tenant, made["id"])
    assert shown["status"] == "paused" and shown["status_reason"] == "no_credits"
    assert len(carrier.placed) == 1
    refused = action(client, tenant, made["id"], "resume")
    assert refused.status_code == 402


# --------------------------------------------------------------------------- crashes


def test_a_crash_between_claim_and_dial_dials_once_and_keeps_no_slot(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contacts(client, tenant, 1)
    made = create(client, tenant, line.assistant_id)
    pump(stack)
    action(client, tenant, made["id"], "start")
    real_send = campaigns.queues.send
    dial_url = config.get_settings().dial_queue_url

    def lost_dials(url: str, message: dict[str, Any], **options: Any) -> None:
        if url == dial_url:
            raise RuntimeError("crashed before the dial job was sent")
        real_send(url, message, **options)

    monkeypatch.setattr(campaigns.queues, "send", lost_dials)
    # The worker dies after the claim: neither its own dial nor the backstop job happen.
    real_dial_now = campaigns._dial_now
    monkeypatch.setattr(campaigns, "_dial_now", lambda *args: None)
    pump(stack)
    assert carrier.placed == []
    monkeypatch.setattr(campaigns.queues, "send", real_send)
    monkeypatch.setattr(campaigns, "_dial_now", real_dial_now)
    later = utcnow() + campaigns.LEASE + timedelta(seconds=1)
    campaigns.tick(later)
    campaigns.tick(later + campaigns.LEASE + timedelta(seconds=1))
    pump(stack)
    assert len(carrier.placed) == 1  # dialled once, though the tick sent it twice
    end(tenant, call_ids(carrier)[0], "completed")
    pump(stack)
    counters = campaign_store.counters(tenant.account_id, made["id"])
    assert counters.in_flight == 0
    assert read(client, tenant, made["id"])["status"] == "completed"


def test_a_lost_call_end_is_swept_and_its_slot_refilled(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    contacts(client, tenant, 2)
    made = create(client, tenant, line.assistant_id)
    pump(stack)
    action(client, tenant, made["id"], "start")
    pump(stack)
    first = call_ids(carrier)[0]
    # The voice session wrote the end; the carrier's final callback never came.
    calls.record_session_end(
        tenant.account_id,
        first,
        CallEvent(
            at=utcnow(),
            status="ended",
            outcome="answered",
            ended_reason="assistant_ended",
            duration_seconds=30,
        ),
    )
    pump(stack)
    assert len(carrier.placed) == 1  # the slot waits for the carrier's word
    campaigns.tick(utcnow() + campaigns.LEASE + timedelta(seconds=1))
    pump(stack)
    assert len(carrier.placed) == 2
    assert (
        member(client, tenant, made["id"], calls.get(tenant.account_id, first).contact_id)["state"]
        == "completed"
    )


def test_a_late_answering_machine_verdict_turns_the_answer_into_a_voicemail_retry(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    contacts(client, tenant, 2)
    made = create(
        client,
        tenant,
        line.assistant_id,
        retry={"outcomes": ["no_answer", "voicemail"]},
    )
    pump(stack)
    action(client, tenant, made["id"], "start")
    pump(stack)
    first = call_ids(carrier)[0]
    reached = calls.get(tenant.account_id, first).contact_id
    end(tenant, first, "completed")
    pump(stack)
    assert member(client, tenant, made["id"], reached)["state"] == "completed"
    assert len(carrier.placed) == 2  # the other contact, in the freed slot
    amd = event_of_twilio(None, at=utcnow(), answered_by="machine_end_beep")
    calls.record_event(tenant.account_id, first, amd)
    pump(stack)
    seen = member(client, tenant, made["id"], reached)
    assert seen["last_outcome"] == "voicemail" and seen["state"] == "pending"
    shown = read(client, tenant, made["id"])
    assert shown["outcomes"]["voicemail"] == 1 and shown["outcomes"]["answered"] == 0
    end(tenant, call_ids(carrier)[1], "completed")
    pump(stack)
    assert len(carrier.placed) == 3
    assert member(client, tenant, made["id"], reached)["attempts"] == 2


def test_a_scheduled_campaign_waits_for_its_start_and_the_tick_starts_it(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contacts(client, tenant, 1)
    at = utcnow() + timedelta(hours=2)
    made = create(client, tenant, line.assistant_id, scheduled_start_at=at.isoformat())
    pump(stack)
    started = action(client, tenant, made["id"], "start")
    assert started.status_code == 200 and started.json()["status"] == "scheduled"
    # Its wake is a Step Functions execution waiting until the start time.
    import boto3

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    executions = sfn.list_executions(stateMachineArn=stack.physical["CampaignWakeStateMachine"])[
        "executions"
    ]
    assert any(made["id"] in e["name"] and "-start-" in e["name"] for e in executions)
    campaigns.tick()
    pump(stack)
    assert carrier.placed == [] and read(client, tenant, made["id"])["status"] == "scheduled"
    # The wake lost: the minute tick starts it once its time has come.
    monkeypatch.setattr(campaigns, "utcnow", lambda: at + timedelta(seconds=1))
    campaigns.tick(at + timedelta(seconds=1))
    pump(stack)
    assert read(client, tenant, made["id"])["status"] == "running"
    assert len(carrier.placed) == 1


def test_a_claimed_call_is_dialled_by_the_claiming_worker_and_its_backstop_does_nothing(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    contacts(client, tenant, 1)
    made = create(client, tenant, line.assistant_id)
    pump(stack)
    action(client, tenant, made["id"], "start")
    # Only the campaign queue is served: the call reaches the carrier without a dial job.
    for _ in range(10):
        if not _campaign_worker.deliver_waiting(stack, strict=True):
            break
    assert len(carrier.placed) == 1
    assert dial_queue.drain(stack) == []  # the backstop waits its delay on the queue
    (claimed,) = call_ids(carrier)
    backstop = DialJob(account_id=tenant.account_id, call_id=claimed).model_dump_json()
    assert dial_queue.invoke(stack, backstop) == {"batchItemFailures": []}
    assert len(carrier.placed) == 1  # it found the call dialled


def test_a_contact_marked_dnc_between_claim_and_dial_is_not_dialled(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    people = contacts(client, tenant, 1)
    made = create(client, tenant, line.assistant_id)
    pump(stack)
    action(client, tenant, made["id"], "start")
    # The claim happens (the call is recorded) but the worker stops before dialling it.
    monkeypatch.setattr(campaigns, "_dial_now", lambda *args: None)
    for _ in range(10):
        if not _campaign_worker.deliver_waiting(stack, strict=True):
            break
    (claimed,) = calls.list_calls(
        tenant.account_id, limit=10, starting_after=None, campaign_id=made["id"]
    ).data
    client.patch(f"/v1/contacts/{people[0]}", json={"do_not_call": True}, headers=tenant.headers)
    # The backstop dial job arrives: the dialer reads the contact again.
    backstop = DialJob(account_id=tenant.account_id, call_id=claimed.id).model_dump_json()
    assert dial_queue.invoke(stack, backstop) == {"batchItemFailures": []}
    pump(stack)
    assert carrier.placed == []
    ended = calls.get(tenant.account_id, claimed.id)
    assert ended.status == "ended" and ended.ended_reason == "canceled"
    seen = member(client, tenant, made["id"], people[0])
    assert seen["state"] == "skipped" and seen["skip_reason"] == "dnc"
    assert read(client, tenant, made["id"])["status"] == "completed"
