"""Auto-reload's rules (talkturo.domain.auto_reload): the month the cap counts in, when a drop
starts a reload, how long a pending reload counts, and the settings' checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from talkturo.domain import auto_reload as rules
from talkturo.domain.auto_reload import AutoReloadUpdate, ReloadJob
from talkturo.domain.billing import BillingJob

NEW_YEAR = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_the_cap_counts_by_calendar_month_in_utc() -> None:
    assert rules.month_of(NEW_YEAR) == "2027-01"
    assert rules.month_of(NEW_YEAR - timedelta(seconds=2)) == "2026-12"
    # What December counted does not count in January
    assert rules.month_credits_now("2026-12", Decimal(100), NEW_YEAR) == 0
    assert rules.month_credits_now("2027-01", Decimal(100), NEW_YEAR) == 100
    assert rules.within_cap(Decimal(100), Decimal(80), Decimal(20))
    assert not rules.within_cap(Decimal(100), Decimal(81), Decimal(20))
    assert rules.within_cap(None, Decimal(10**6), Decimal(20))


def test_a_drop_starts_a_reload_only_when_armed_or_capped_in_an_earlier_month() -> None:
    assert rules.may_start("armed", None, NEW_YEAR)
    assert rules.may_start("capped", "2026-12", NEW_YEAR)
    assert not rules.may_start("capped", "2027-01", NEW_YEAR)
    for state in ["pending", "waiting", "failed", "off"]:
        assert not rules.may_start(state, "2026-12", NEW_YEAR), state


def test_a_pending_reload_counts_for_a_bounded_time() -> None:
    since = NEW_YEAR
    assert rules.pending_counts("pending", since, since + timedelta(minutes=9))
    assert not rules.pending_counts("pending", since, since + rules.PENDING_COUNTS_FOR)
    assert not rules.pending_counts("failed", since, since)
    assert not rules.pending_counts("pending", None, since)


def test_each_reload_has_its_own_stripe_idempotency_key() -> None:
    assert rules.reload_key("acct_1", 3) == "talkturo:reload:acct_1:3"
    assert rules.reload_key("acct_1", 3) != rules.reload_key("acct_1", 4)
    assert rules.reload_key("acct_1", 3) != rules.reload_key("acct_2", 3)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threshold", "0"),
        ("threshold", "-5"),
        ("threshold", "1.00001"),
        ("threshold", "NaN"),
        ("monthly_cap", "2000000"),
        ("surprise", "1"),
    ],
)
def test_the_settings_refuse_what_is_not_a_positive_credit_amount(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        AutoReloadUpdate.model_validate({field: value})
    assert refused.value.errors()[0]["loc"] == (field,)


def test_a_billing_job_is_an_event_or_a_reload() -> None:
    assert BillingJob(event_id="evt_1").reload is None
    assert BillingJob(reload=ReloadJob(account_id="acct_1", sequence=1)).event_id is None
    with pytest.raises(ValidationError):
        BillingJob()
    with pytest.raises(ValidationError):
        BillingJob(event_id="evt_1", reload=ReloadJob(account_id="acct_1", sequence=1))


def test_an_uncharged_pending_reload_is_sent_again_now_and_then_while_its_key_is_safe() -> None:
    since = NEW_YEAR

    def again(age: timedelta, requeued: timedelta | None = None, charged: bool = False) -> bool:
        now = since + age
        requeued_at = None if requeued is None else now - requeued
        return rules.needs_requeue("pending", charged, since, requeued_at, now)

    assert not again(timedelta(minutes=9))  # a slow message, not a lost one
    assert again(timedelta(minutes=10))
    assert not again(timedelta(minutes=30), requeued=timedelta(minutes=5))
    assert again(timedelta(minutes=30), requeued=timedelta(minutes=10))
    assert not again(timedelta(minutes=30), charged=True)
    assert not again(timedelta(hours=23))  # Stripe may forget the key: never risk a second charge
    assert not rules.needs_requeue("armed", False, since, None, since + timedelta(hours=1))
