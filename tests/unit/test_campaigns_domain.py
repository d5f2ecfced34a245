"""Campaign rules: lifecycle transitions, what an outcome does to a contact, caller-ID rotation,
the progress figures, settings validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from talkturo.domain.campaigns import (
    Audience,
    Campaign,
    CampaignContact,
    CampaignCounters,
    Retry,
    Window,
    after_call,
    caller_for,
    nobody_left,
    outcome_of,
    transition,
    with_figures,
)

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def _campaign(status: str = "draft") -> Campaign:
    return Campaign(
        id="camp_1",
        name="c",
        status=status,  # type: ignore[arg-type]
        assistant_id="asst_1",
        phone_number_ids=["pn_a", "pn_b", "pn_c"],
        audience=Audience(type="filter"),
        created_at=NOW,
        updated_at=NOW,
    )


def _member(**fields: object) -> CampaignContact:
    return CampaignContact(campaign_id="camp_1", contact_id="ct_1", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "action", "expected"),
    [
        ("draft", "start", "running"),
        ("draft", "schedule", "scheduled"),
        ("scheduled", "start", "running"),
        ("running", "pause", "paused"),
        ("paused", "resume", "running"),
        ("running", "complete", "completed"),
        ("draft", "cancel", "cancelled"),
        ("scheduled", "cancel", "cancelled"),
        ("paused", "cancel", "cancelled"),
        ("draft", "pause", None),
        ("paused", "pause", None),
        ("running", "start", None),
        ("completed", "cancel", None),
        ("cancelled", "resume", None),
        ("paused", "complete", None),
    ],
)
def test_transitions(status: str, action: str, expected: str | None) -> None:
    assert transition(_campaign(status), action) == expected


def test_answered_or_opted_out_completes_the_contact() -> None:
    retry = Retry()
    member = _member(attempts=1)
    assert after_call(member, "answered", ended_at=NOW, max_attempts=3, retry=retry).state == (
        "completed"
    )
    opted = after_call(
        member, "no_answer", ended_at=NOW, max_attempts=3, retry=retry, opted_out=True
    )
    assert opted.state == "completed"


def test_a_retried_outcome_waits_its_delay_scaled() -> None:
    retry = Retry(delays={"busy": 120})
    member = _member(attempts=1)
    nxt = after_call(member, "busy", ended_at=NOW, max_attempts=3, retry=retry)
    assert nxt.state == "pending" and nxt.next_attempt_at == NOW + timedelta(seconds=120)
    scaled = after_call(
        member, "no_answer", ended_at=NOW, max_attempts=3, retry=retry, delay_scale=0.5
    )
    assert scaled.next_attempt_at == NOW + timedelta(seconds=150)  # default 300 s, halved


def test_an_outcome_not_retried_or_the_last_attempt_exhausts() -> None:
    retry = Retry()  # voicemail is not retried by default
    assert (
        after_call(
            _member(attempts=1), "voicemail", ended_at=NOW, max_attempts=3, retry=retry
        ).state
        == "exhausted"
    )
    assert (
        after_call(
            _member(attempts=3), "no_answer", ended_at=NOW, max_attempts=3, retry=retry
        ).state
        == "exhausted"
    )


def test_outcomes_in_campaign_words() -> None:
    assert outcome_of("failed") == "error"
    assert outcome_of(None) == "error"
    assert outcome_of("voicemail") == "voicemail"


def test_caller_ids_rotate_by_position_and_stick_while_active() -> None:
    rotation = ["pn_a", "pn_b", "pn_c"]
    active = set(rotation)
    picked = [caller_for(_member(position=i), rotation, active) for i in range(4)]
    assert picked == ["pn_a", "pn_b", "pn_c", "pn_a"]
    kept = _member(position=0, caller_phone_number_id="pn_c")
    assert caller_for(kept, rotation, active) == "pn_c"
    # A number no longer active: the next active one of the rotation.
    assert caller_for(kept, rotation, {"pn_b"}) == "pn_b"
    assert caller_for(kept, rotation, set()) is None


def test_figures_exclude_voicemail_from_the_answer_rate() -> None:
    counters = CampaignCounters(
        audience_total=10,
        counts={"completed": 4, "exhausted": 1, "skipped": 1, "pending": 4},
        outcomes={"answered": 4, "voicemail": 2, "no_answer": 4},
    )
    shown = with_figures(_campaign("running"), counters)
    assert shown.answer_rate == 0.5  # 4 of the 8 calls that were not voicemail
    assert shown.completion_rate == 0.6
    assert shown.counts["queued"] == 0


def test_nobody_left_needs_the_audience_and_no_call_in_flight() -> None:
    done = CampaignCounters(counts={"completed": 2})
    assert nobody_left(done, audience_ready=True)
    assert not nobody_left(done, audience_ready=False)
    assert not nobody_left(CampaignCounters(counts={"pending": 1}), audience_ready=True)
    assert not nobody_left(CampaignCounters(in_flight=1), audience_ready=True)


def test_settings_validation() -> None:
    with pytest.raises(ValidationError):
        Audience(type="company")
    with pytest.raises(ValidationError):
        Audience(type="contacts", contact_ids=[])
    with pytest.raises(ValidationError):
        Audience(type="filter", company_id="co_1")
    assert Audience(type="contacts", contact_ids=["ct_1", "ct_1"]).contact_ids == ["ct_1"]
    with pytest.raises(ValidationError):
        Window(timezone="Mars/Base")
    with pytest.raises(ValidationError):
        Window(start="09:00", end="09:00")
    assert Window(start="09:00", end="09:00", allow_anytime=True).allow_anytime
    assert Window(days=["fri", "mon"]).days == ["mon", "fri"]
    with pytest.raises(ValidationError):
        Retry(delays={"busy": 5})
    window = Window(start="22:00", end="02:00", days=["sat"]).rule()
    assert window.days == frozenset({5})
