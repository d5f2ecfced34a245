"""A call's end handing its slot straight to the next due contact (the handover), on the
emulator: without a dispatch round or its turn, the same claim-time checks, the fallback when a
round claimed the contact first, the limits under racing ends and rounds, a crash before the
dial."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import wait
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkturo import config
from talkturo.domain.common import utcnow
from talkturo.local.template import Stack
from talkturo.services import calls, campaigns, credits
from talkturo.store import campaigns as campaign_store
from talkturo.store import keys
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import calls_setup
from tests.integration import test_campaigns as base
from tests.zones import asleep_zone, awake_zone

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def fast_dials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No pacing delay and retries at once: the tests drive time themselves."""
    monkeypatch.setenv("TALKTURO_DIAL_CALLS_PER_SECOND", "100")
    monkeypatch.setenv("TALKTURO_CAMPAIGN_DELAY_SCALE", "0")
    config.get_settings.cache_clear()
    yield
    config.get_settings.cache_clear()


@pytest.fixture
def line(client: TestClient, stack: Stack, tenant: Tenant, carrier: FakeCarrier) -> Any:
    return calls_setup.line(client, stack, tenant, base.NUMBER)


@pytest.fixture
def rounds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The campaigns every dispatch was run for (a round, or a round asked of the turn)."""
    asked: list[str] = []
    real_dispatch = campaigns.dispatch

    def dispatch(account_id: str, campaign_id: str, *args: Any, **options: Any) -> int:
        asked.append(campaign_id)
        return real_dispatch(account_id, campaign_id, *args, **options)

    monkeypatch.setattr(campaigns, "dispatch", dispatch)
    return asked


@pytest.fixture
def handovers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The contacts a claim tried to hand an ended call's slot to."""
    tried: list[str] = []
    real_claim = campaign_store.claim

    def claim(account_id: str, **fields: Any) -> bool:
        if fields.get("handover") is not None:
            tried.append(fields["after"].contact_id)
        return real_claim(account_id, **fields)

    monkeypatch.setattr(campaign_store, "claim", claim)
    return tried


def account_in_flight(account_id: str) -> int:
    campaign_store.connection()
    item = campaign_store.AccountSlotsItem.get(
        keys.account(account_id), "CAMPSLOTS", consistent_read=True
    )
    return int(item.in_flight or 0)


def contact_of(tenant: Tenant, call_id: str) -> str:
    contact_id = calls.get(tenant.account_id, call_id).contact_id
    assert contact_id is not None
    return contact_id


def person(client: TestClient, tenant: Tenant, index: int, zone: str) -> str:
    body = {
        "first_name": f"Person{index}",
        "phone": f"+1415555{1000 + index:04d}",
        "timezone": zone,
        "tags": ["launch"],
    }
    answer = client.post("/v1/contacts", json=body, headers=tenant.headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_an_end_hands_its_slot_to_the_next_contact_while_a_round_holds_the_turn(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    rounds: list[str],
    handovers: list[str],
) -> None:
    campaign_id = base.launched(client, stack, tenant, line, 3, 1)
    base.pump(stack)
    (first,) = base.call_ids(carrier)
    rounds.clear()
    # Another worker's dispatch holds the turn (a round under way): the end does not wait for it.
    held = campaign_store.take_turn(
        tenant.account_id, campaign_id, "round", campaigns._now_ms(), 60_000
    )
    assert held is not None

    base.end(tenant, first, "completed")

    # Dialled from the carrier's callback itself: no dispatch, no campaign job.
    assert rounds == []
    assert len(carrier.placed) == 2 and len(handovers) == 1
    second = base.call_ids(carrier)[1]
    assert contact_of(tenant, second) == handovers[0]
    assert base._campaign_worker.deliver_waiting(stack, strict=True) == []
    base.refilled_after(client, tenant, carrier, campaign_id, first)
    assert account_in_flight(tenant.account_id) == 1
    shown = base.read(client, tenant, campaign_id)
    assert shown["counts"]["completed"] == 1 and shown["counts"]["pending"] == 1
    assert shown["counts"]["queued"] + shown["counts"]["calling"] == 1
    assert shown["outcomes"]["answered"] == 1
    assert base.member(client, tenant, campaign_id, handovers[0])["attempts"] == 1


def test_a_handover_that_loses_its_contact_to_a_round_falls_back_to_the_release(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    campaign_id = base.launched(client, stack, tenant, line, 3, 2)
    base.pump(stack)
    first, second = base.call_ids(carrier)
    real_claim = campaign_store.claim
    real_hand_over = campaigns._hand_over
    raced: list[str] = []

    def claim(account_id: str, **fields: Any) -> bool:
        if fields.get("handover") is not None and not raced:
            raced.append(fields["after"].contact_id)
            # Meanwhile the other call ends the usual way, and its round claims that contact.
            monkeypatch.setattr(campaigns, "_hand_over", lambda *args: ("lost", 1))
            base.end(tenant, second, "completed")
            monkeypatch.setattr(campaigns, "_hand_over", real_hand_over)
        return real_claim(account_id, **fields)

    monkeypatch.setattr(campaign_store, "claim", claim)

    base.end(tenant, first, "completed")

    base.pump(stack)
    assert len(carrier.placed) == 3
    third = base.call_ids(carrier)[2]
    assert raced == [contact_of(tenant, third)]  # claimed by the round, dialled once
    # The handover's transaction was refused whole: the end gave its slot back instead.
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 1
    assert account_in_flight(tenant.account_id) == 1
    for ended in (first, second):
        assert base.member(client, tenant, campaign_id, contact_of(tenant, ended))["state"] == (
            "completed"
        )
    shown = base.read(client, tenant, campaign_id)
    assert shown["counts"]["completed"] == 2 and shown["outcomes"]["answered"] == 2
    assert shown["counts"]["pending"] == 0
    assert base.member(client, tenant, campaign_id, raced[0])["attempts"] == 1


def open_calls(tenant: Tenant, carrier: FakeCarrier) -> list[str]:
    return [c for c in base.call_ids(carrier) if calls.get(tenant.account_id, c).status != "ended"]


def during_first_handover(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], object]
) -> list[str]:
    """The contacts a claim tried to hand an ended call's slot to; `meanwhile` is run just
    before the first of those claims' transaction."""
    tried: list[str] = []
    real_claim = campaign_store.claim

    def claim(account_id: str, **fields: Any) -> bool:
        if fields.get("handover") is not None:
            tried.append(fields["after"].contact_id)
            if len(tried) == 1:
                meanwhile()
        return real_claim(account_id, **fields)

    monkeypatch.setattr(campaign_store, "claim", claim)
    return tried


def test_a_handover_that_loses_its_contact_to_a_round_claims_another_one_due(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
    rounds: list[str],
) -> None:
    campaign_id = base.launched(client, stack, tenant, line, 5, 2)
    base.pump(stack)
    first, second = base.call_ids(carrier)
    head = campaign_store.due(tenant.account_id, campaign_id, utcnow(), 3)
    # After a lost claim the contacts left are tried in an order of the end's own (here: the
    # head's last first), not in the order the other ends racing for them walk.
    monkeypatch.setattr(campaigns.random, "shuffle", lambda waiting: waiting.reverse())
    real_hand_over = campaigns._hand_over

    def round_claims_it() -> None:
        # Meanwhile the other call ends the usual way, and its round claims that contact.
        monkeypatch.setattr(campaigns, "_hand_over", lambda *args: ("lost", 1))
        base.end(tenant, second, "completed")
        monkeypatch.setattr(campaigns, "_hand_over", real_hand_over)
        rounds.clear()

    tried = during_first_handover(monkeypatch, round_claims_it)

    base.end(tenant, first, "completed")

    # The handover went on to another contact of the head: no dispatch for this end.
    assert rounds == []
    assert tried == [head[0][0].contact_id, head[2][0].contact_id]
    assert len(carrier.placed) == 4
    third, fourth = base.call_ids(carrier)[2:]
    assert contact_of(tenant, third) == tried[0]  # the round's
    assert contact_of(tenant, fourth) == tried[1]  # the handover's, in the first call's slot
    base.pump(stack)
    live = open_calls(tenant, carrier)
    assert len(live) == 2
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == len(live)
    assert account_in_flight(tenant.account_id) == len(live)
    shown = base.read(client, tenant, campaign_id)
    assert shown["counts"]["completed"] == 2 and shown["counts"]["pending"] == 1
    assert shown["outcomes"]["answered"] == 2
    assert base.member(client, tenant, campaign_id, head[1][0].contact_id)["attempts"] == 0
    for contact_id in tried:
        assert base.member(client, tenant, campaign_id, contact_id)["attempts"] == 1


def test_a_handover_whose_head_is_all_skipped_reads_on_and_calls_the_next_contact(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    rounds: list[str],
) -> None:
    count = campaigns.HANDOVER_HEAD + 2
    campaign_id = base.launched(client, stack, tenant, line, count, 1)
    base.pump(stack)
    (first,) = base.call_ids(carrier)
    head = campaign_store.due(tenant.account_id, campaign_id, utcnow(), count)
    assert len(head) == count - 1
    marked = [m.contact_id for m, _ in head[: campaigns.HANDOVER_HEAD]]
    for contact_id in marked:
        answer = client.patch(
            f"/v1/contacts/{contact_id}", json={"do_not_call": True}, headers=tenant.headers
        )
        assert answer.status_code == 200
    rounds.clear()

    base.end(tenant, first, "completed")

    assert rounds == []  # handed over past the whole first head, no dispatch needed
    assert len(carrier.placed) == 2
    assert contact_of(tenant, base.call_ids(carrier)[1]) == head[-1][0].contact_id
    for contact_id in marked:
        assert base.member(client, tenant, campaign_id, contact_id)["skip_reason"] == "dnc"
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 1
    assert account_in_flight(tenant.account_id) == 1


def test_a_handover_whose_slot_was_given_back_meanwhile_tries_no_other_contact(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    campaign_id = base.launched(client, stack, tenant, line, 3, 1)
    base.pump(stack)
    (first,) = base.call_ids(carrier)

    def tick_gives_it_back() -> None:
        # Meanwhile the tick finds the ended call's lease run out and gives its slot back.
        later = utcnow() + campaigns.LEASE + timedelta(seconds=1)
        assert campaigns.sweep(tenant.account_id, campaign_id, later) == 1

    tried = during_first_handover(monkeypatch, tick_gives_it_back)

    base.end(tenant, first, "completed")

    assert len(tried) == 1 and len(carrier.placed) == 1  # that slot is no one's to take
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 0
    assert account_in_flight(tenant.account_id) == 0
    shown = base.read(client, tenant, campaign_id)
    assert shown["counts"]["completed"] == 1 and shown["outcomes"]["answered"] == 1
    campaigns.tick()  # the next tick refills the slot
    base.pump(stack)
    assert len(carrier.placed) == 2
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 1


def together(work: list[Callable[[], object]]) -> None:
    """Every callable in a thread of its own, let go at once."""
    go = threading.Barrier(len(work), timeout=30)
    failures: list[BaseException] = []

    def run(job: Callable[[], object]) -> None:
        go.wait()
        try:
            job()
        except BaseException as error:  # raised below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def test_ends_handing_over_while_rounds_race_never_exceed_the_limit(
    client: TestClient, stack: Stack, tenant: Tenant, line: Any, carrier: FakeCarrier
) -> None:
    limit, audience = 3, 12
    campaign_id = base.launched(client, stack, tenant, line, audience, limit)
    base.pump(stack)
    seen: set[str] = set()
    while True:
        live = [c for c in base.call_ids(carrier) if c not in seen]
        if not live:
            break
        assert len(live) <= limit
        seen.update(live)
        kept: list[dict[str, Any]] = [{}, {}]
        # The calls' ends, two rounds without the turn and one dispatch, all at once.
        work: list[Callable[[], object]] = [
            lambda call_id=call_id: base.end(tenant, call_id, "completed") for call_id in live
        ]
        work += [
            lambda own=own: campaigns._fill(tenant.account_id, campaign_id, None, own)
            for own in kept
        ]
        work.append(lambda: campaigns.dispatch(tenant.account_id, campaign_id))
        together(work)
        for own in kept:
            wait(own.get("dials", []))
        open_calls = [
            c for c in base.call_ids(carrier) if calls.get(tenant.account_id, c).status != "ended"
        ]
        in_flight = campaign_store.counters(tenant.account_id, campaign_id).in_flight
        assert in_flight == len(open_calls) <= limit
        assert account_in_flight(tenant.account_id) == in_flight
        base.pump(stack)
    placed = base.call_ids(carrier)
    assert len(placed) == audience
    assert len({contact_of(tenant, c) for c in placed}) == audience  # each dialled once
    shown = base.read(client, tenant, campaign_id)
    assert shown["status"] == "completed" and shown["counts"]["completed"] == audience
    assert shown["outcomes"]["answered"] == audience
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 0
    assert account_in_flight(tenant.account_id) == 0


def test_a_contact_marked_dnc_is_skipped_at_the_handover_and_the_next_one_called(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    rounds: list[str],
) -> None:
    campaign_id = base.launched(client, stack, tenant, line, 3, 1)
    base.pump(stack)
    (first,) = base.call_ids(carrier)
    ((head, _),) = campaign_store.due(tenant.account_id, campaign_id, utcnow(), 1)
    answer = client.patch(
        f"/v1/contacts/{head.contact_id}", json={"do_not_call": True}, headers=tenant.headers
    )
    assert answer.status_code == 200
    rounds.clear()

    base.end(tenant, first, "completed")

    assert rounds == []
    assert len(carrier.placed) == 2
    assert contact_of(tenant, base.call_ids(carrier)[1]) != head.contact_id
    skipped = base.member(client, tenant, campaign_id, head.contact_id)
    assert skipped["state"] == "skipped" and skipped["skip_reason"] == "dnc"
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 1


def test_a_contact_outside_its_hours_waits_at_the_handover_and_the_next_one_is_called(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    rounds: list[str],
) -> None:
    awake = awake_zone()
    person(client, tenant, 0, awake)
    asleep = person(client, tenant, 1, asleep_zone())
    later = person(client, tenant, 2, awake)
    made = base.create(client, tenant, line.assistant_id, max_concurrent_calls=1)
    base.pump(stack)
    base.action(client, tenant, made["id"], "start")
    base.pump(stack)
    (first,) = base.call_ids(carrier)
    rounds.clear()

    base.end(tenant, first, "completed")

    assert rounds == []
    assert len(carrier.placed) == 2
    assert contact_of(tenant, base.call_ids(carrier)[1]) == later
    waiting = base.member(client, tenant, made["id"], asleep)
    assert waiting["state"] == "pending" and waiting["attempts"] == 0
    assert waiting["next_attempt_at"] > utcnow().isoformat()


def test_no_credits_refuse_the_handover_and_the_end_pauses_the_campaign(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    handovers: list[str],
) -> None:
    campaign_id = base.launched(client, stack, tenant, line, 2, 1)
    base.pump(stack)
    (first,) = base.call_ids(carrier)
    balance = credits.balance(tenant.account_id).balance
    credits.record(tenant.account_id, "usage", -balance, idempotency_key="test:drain")

    base.end(tenant, first, "completed")
    base.pump(stack)

    assert handovers == [] and len(carrier.placed) == 1
    shown = base.read(client, tenant, campaign_id)
    assert shown["status"] == "paused" and shown["status_reason"] == "no_credits"
    assert shown["counts"]["completed"] == 1 and shown["counts"]["pending"] == 1
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 0
    assert account_in_flight(tenant.account_id) == 0


def test_a_crash_between_the_handover_claim_and_its_dial_dials_once(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
    handovers: list[str],
) -> None:
    campaign_id = base.launched(client, stack, tenant, line, 2, 1)
    base.pump(stack)
    (first,) = base.call_ids(carrier)
    real_send = campaigns.queues.send
    dial_url = config.get_settings().dial_queue_url

    def lost_dials(url: str, message: dict[str, Any], **options: Any) -> None:
        if url == dial_url:
            raise RuntimeError("crashed before the dial job was sent")
        real_send(url, message, **options)

    # The callback's worker dies after the handover's claim: no dial, no backstop job.
    monkeypatch.setattr(campaigns.queues, "send", lost_dials)
    real_dial_now = campaigns._dial_now
    monkeypatch.setattr(campaigns, "_dial_now", lambda *args: None)
    base.end(tenant, first, "completed")
    base.pump(stack)
    assert len(handovers) == 1 and len(carrier.placed) == 1
    assert base.member(client, tenant, campaign_id, handovers[0])["state"] == "queued"
    monkeypatch.setattr(campaigns.queues, "send", real_send)
    monkeypatch.setattr(campaigns, "_dial_now", real_dial_now)

    later = utcnow() + campaigns.LEASE + timedelta(seconds=1)
    campaigns.tick(later)
    campaigns.tick(later + campaigns.LEASE + timedelta(seconds=1))
    base.pump(stack)

    assert len(carrier.placed) == 2  # dialled once, though the tick sent it twice
    second = base.call_ids(carrier)[1]
    assert contact_of(tenant, second) == handovers[0]
    base.end(tenant, second, "completed")
    base.pump(stack)
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 0
    assert base.read(client, tenant, campaign_id)["status"] == "completed"


def test_a_handover_never_keeps_a_campaign_above_a_limit_lowered_meanwhile(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    handovers: list[str],
) -> None:
    campaign_id = base.launched(client, stack, tenant, line, 4, 2)
    base.pump(stack)
    first, second = base.call_ids(carrier)
    # Lowered to one call while paused, both calls still live.
    assert base.action(client, tenant, campaign_id, "pause").status_code == 200
    lowered = client.patch(
        f"/v1/campaigns/{campaign_id}", json={"max_concurrent_calls": 1}, headers=tenant.headers
    )
    assert lowered.status_code == 200, lowered.text
    assert base.action(client, tenant, campaign_id, "resume").status_code == 200
    base.pump(stack)

    base.end(tenant, first, "completed")
    base.pump(stack)

    # Two calls held, one allowed: the end gives its slot back instead of handing it over.
    assert len(handovers) == 1 and len(carrier.placed) == 2
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 1

    base.end(tenant, second, "completed")

    assert len(handovers) == 2 and len(carrier.placed) == 3
    assert contact_of(tenant, base.call_ids(carrier)[2]) == handovers[1]
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 1


def test_a_handover_never_keeps_the_account_above_its_cap(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    line: Any,
    carrier: FakeCarrier,
    monkeypatch: pytest.MonkeyPatch,
    handovers: list[str],
) -> None:
    campaign_id = base.launched(client, stack, tenant, line, 4, 2)
    base.pump(stack)
    first, _ = base.call_ids(carrier)
    # The account's cap comes down to one call while two are live.
    monkeypatch.setenv("TALKTURO_CAMPAIGN_ACCOUNT_MAX_CONCURRENT", "1")
    config.get_settings.cache_clear()

    base.end(tenant, first, "completed")
    base.pump(stack)

    assert len(handovers) == 1 and len(carrier.placed) == 2
    assert account_in_flight(tenant.account_id) == 1
    assert campaign_store.counters(tenant.account_id, campaign_id).in_flight == 1
