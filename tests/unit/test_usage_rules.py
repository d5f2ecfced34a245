"""The pure rules of usage, number rent and campaign budgets."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from talkturo.domain.budgets import (
    DEFAULT_SHARES,
    MIN_HISTORY_CALLS,
    burn_rate,
    cap_decision,
    expected_attempts,
    forecast,
    history_of,
    window_hours,
)
from talkturo.domain.campaigns import Audience, Campaign, Retry, Window
from talkturo.domain.credits import credits_of_cents
from talkturo.domain.numbers import (
    GRACE_DAYS,
    PhoneNumberRecord,
    add_months,
    paid,
    rent_amount,
    rent_due_at,
    unpaid,
)
from talkturo.domain.usage import MAX_REPORT_DAYS, UsageTags, report_range

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


def _number(**fields: object) -> PhoneNumberRecord:
    base: dict[str, object] = {
        "id": "pn_1",
        "phone_number": "+493012345670",
        "country": "DE",
        "type": "local",
        "friendly_name": "Berlin",
        "status": "active",
        "monthly_price_cents": 200,
        "setup_price_cents": 100,
        "created_at": NOW,
        "updated_at": NOW,
    }
    return PhoneNumberRecord.model_validate({**base, **fields})


def _campaign(**fields: object) -> Campaign:
    base: dict[str, object] = {
        "id": "camp_1",
        "name": "Spring",
        "assistant_id": "asst_1",
        "phone_number_ids": ["pn_1"],
        "audience": Audience(type="filter"),
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Campaign.model_validate({**base, **fields})


# --------------------------------------------------------------------------- rent


def test_months_keep_their_day_or_end_on_the_last_day() -> None:
    assert add_months(NOW, 1) == datetime(2025, 2, 28, 12, 0, tzinfo=UTC)
    assert add_months(NOW, 2) == datetime(2025, 3, 31, 12, 0, tzinfo=UTC)
    assert add_months(NOW, 13) == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    assert add_months(datetime(2024, 1, 31, tzinfo=UTC), 1).day == 29  # a leap year


def test_cents_are_credits_at_the_base_rate() -> None:
    assert credits_of_cents(150) == Decimal(3)
    assert credits_of_cents(1) == Decimal("0.02")


def test_the_first_period_adds_the_setup_unless_waived() -> None:
    number = _number()
    assert rent_amount(number, 0) == Decimal(6)
    assert rent_amount(number, 1) == Decimal(4)
    assert rent_amount(number.model_copy(update={"setup_waived": True}), 0) == Decimal(4)


def test_paid_months_run_from_the_anchor_without_drift() -> None:
    # Given a number bought on the 31st
    first = paid(_number(), 0, NOW)
    assert first.renews_at == datetime(2025, 2, 28, 12, 0, tzinfo=UTC)
    # When February is paid, March renews on the 31st again (not the 28th)
    second = paid(first, 1, first.renews_at)  # type: ignore[arg-type]
    assert second.renews_at == datetime(2025, 3, 31, 12, 0, tzinfo=UTC)
    assert second.rent_period == 2 and second.rent_anchor_at == NOW


def test_an_unpaid_number_is_suspended_for_its_grace_and_resumes_counted_from_payment() -> None:
    due = paid(_number(), 0, NOW)
    suspended = unpaid(due, NOW + timedelta(days=28))
    assert suspended.status == "suspended" and suspended.suspended_reason == "unpaid"
    assert suspended.release_at == NOW + timedelta(days=28 + GRACE_DAYS)
    assert rent_due_at(suspended) == suspended.release_at
    later = NOW + timedelta(days=35)
    resumed = paid(suspended, 1, later)
    assert resumed.status == "active" and resumed.suspended_reason is None
    assert resumed.rent_anchor_at == later and resumed.renews_at == add_months(later, 1)
    assert rent_due_at(resumed) == resumed.renews_at


def test_trials_and_operator_suspensions_are_not_due() -> None:
    assert rent_due_at(_number(trial=True, renews_at=NOW)) is None
    assert rent_due_at(_number(status="suspended", suspended_reason="operator")) is None
    assert rent_due_at(_number(status="released", renews_at=NOW)) is None


# --------------------------------------------------------------------------- usage


def test_a_report_defaults_to_thirty_days_and_is_bounded() -> None:
    today = date(2025, 3, 10)
    assert report_range(None, None, today) == (date(2025, 2, 9), today)
    assert report_range(date(2025, 3, 1), None, today) == (date(2025, 3, 1), today)
    with pytest.raises(ValueError, match=r"^to:"):
        report_range(date(2025, 3, 2), date(2025, 3, 1), today)
    with pytest.raises(ValueError, match=r"^from:"):
        report_range(today - timedelta(days=MAX_REPORT_DAYS), today, today)


def test_usage_tags_name_the_groups_they_count_in() -> None:
    tags = UsageTags(category="calls", assistant_id="asst_1", phone_number_id="pn_1")
    assert tags.dimensions() == {"assistant": "asst_1", "number": "pn_1"}
    assert UsageTags(category="numbers").dimensions() == {}


# --------------------------------------------------------------------------- budgets


def test_the_history_is_the_account_s_from_enough_calls_else_the_defaults() -> None:
    assert history_of([("answered", 60)] * (MIN_HISTORY_CALLS - 1)).source == "defaults"
    seen = [("answered", 90)] * 10 + [("no_answer", 0)] * 10 + [("voicemail", 20)] * 5
    history = history_of(seen)  # type: ignore[arg-type]
    assert history.source == "account" and history.calls == 25
    assert history.shares["answered"] == 0.4 and history.answered_seconds == 90
    assert history.voicemail_seconds == 20


def test_expected_attempts_follow_the_retried_share() -> None:
    history = history_of([])
    retried = DEFAULT_SHARES["no_answer"] + DEFAULT_SHARES["busy"] + DEFAULT_SHARES["error"]
    assert expected_attempts(1, Retry(), history) == 1
    assert expected_attempts(3, Retry(), history) == pytest.approx(1 + retried + retried**2)
    assert expected_attempts(3, Retry(outcomes=[]), history) == 1


def test_window_hours_are_cut_by_the_federal_floor() -> None:
    assert window_hours(_campaign()) == 8  # 09:00-17:00
    assert window_hours(_campaign(call_window=Window(allow_anytime=True))) == 13
    assert window_hours(_campaign(call_window=Window(start="19:00", end="02:00"))) == 2


def test_the_forecast_scales_with_contacts_and_compares_balance_and_cap() -> None:
    history = history_of([])
    campaign = _campaign(max_attempts=1, credit_cap=Decimal(10))
    small = forecast(
        campaign,
        contacts=10,
        rate_per_minute=Decimal(1),
        history=history,
        balance=Decimal(100),
        spent=Decimal(0),
    )
    # 0.35 x 120 s + 0.2 x 30 s = 48 s a call: 0.8 credits at 1 a minute
    assert small.credits_per_call == Decimal("0.8") and small.credits == Decimal(8)
    assert small.balance_covers and small.cap_covers and small.contacts_affordable == 10
    large = forecast(
        campaign,
        contacts=100,
        rate_per_minute=Decimal(1),
        history=history,
        balance=Decimal(20),
        spent=Decimal(2),
    )
    assert large.credits == Decimal(80) and not large.balance_covers
    assert large.cap_covers is False and large.contacts_affordable == 10  # (10 - 2) / 0.8


def test_the_cap_pauses_once_spent_and_waits_for_calls_in_flight() -> None:
    assert cap_decision(None, Decimal(100), 5, Decimal(1)) == "dial"
    assert cap_decision(Decimal(10), Decimal(10), 0, Decimal(1)) == "pause"
    assert cap_decision(Decimal(10), Decimal(7), 2, Decimal(1)) == "wait"  # 7 + 2 x 2 min
    assert cap_decision(Decimal(10), Decimal(7), 1, Decimal(1)) == "dial"
    assert cap_decision(Decimal(10), Decimal(9), 0, Decimal(1)) == "dial"


def test_burn_rate_is_recent_charges_over_their_span() -> None:
    charges = [(NOW - timedelta(minutes=30), Decimal(2)), (NOW - timedelta(minutes=5), Decimal(1))]
    assert burn_rate(charges, NOW) == Decimal(6)
    assert burn_rate(charges[:1], NOW) is None
    assert burn_rate([(NOW, Decimal(1)), (NOW, Decimal(1))], NOW) is None
