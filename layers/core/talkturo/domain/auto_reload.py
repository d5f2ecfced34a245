"""Auto-reload (docs/billing.md#auto-reload): the account's settings, the states a reload goes
through, and the rules that decide when one is charged. Pure: no I/O.

One reload per drop. While `armed`, the first usage draw that leaves the balance below the
threshold claims the next reload sequence (a conditional write: of draws crossing at once,
one wins) and the account waits in `pending` until the reload's credits land; it is armed
again once a purchase lands and the balance is at or above the threshold. A refused card
(`failed`) stays disarmed until the account turns auto-reload on again; a reload that the
monthly cap would not allow is not charged (`capped`) until the next calendar month (UTC) or a
purchase that lifts the balance above the threshold.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from talkturo.domain.common import Credits, Resource, quantize_credits
from talkturo.domain.credits import MAX_ENTRY_CREDITS

ReloadState = Literal["off", "armed", "pending", "waiting", "capped", "failed"]

# A pending reload counts towards the balance when a live call's draw would be refused, so a
# call is not ended by a reload under way; one older than this no longer counts (its payment
# went wrong somewhere, and the call must not run on credits that are not coming).
PENDING_COUNTS_FOR = timedelta(minutes=10)
# A reload still uncharged this long after it started (its message lost, or the process that
# started it stopped before sending it) is queued again by the next draw below the threshold,
# at most once per this interval, with the same sequence and so the same Stripe key. Never once
# Stripe may have forgotten that key (24 hours): a second charge could follow.
REQUEUE_AFTER = timedelta(minutes=10)
REQUEUE_UNTIL = timedelta(hours=23)

STATE_MEANING: dict[str, str] = {
    "off": "auto-reload is off",
    "armed": "a reload is charged when a call's usage takes the balance below the threshold",
    "pending": "a reload was charged; its credits arrive through Stripe's webhook",
    "waiting": "the reload's credits landed but the balance is still below the threshold: the "
    "next reload waits until a purchase lifts it above",
    "capped": "a reload would exceed the monthly cap and was not charged: armed again next month "
    "or once a purchase lifts the balance above the threshold",
    "failed": "the saved card was refused: no reload is charged until auto-reload is turned on "
    "again (after a checkout with save_card, to fix the card)",
}


def month_of(moment: datetime) -> str:
    """The calendar month (UTC) a reload counts towards the cap in: `YYYY-MM`."""
    return f"{moment:%Y-%m}"


def reload_key(account_id: str, sequence: int) -> str:
    """Stripe's idempotency key of the account's reload number `sequence`: a retried or
    repeated charge of the same reload is the same PaymentIntent."""
    return f"talkturo:reload:{account_id}:{sequence}"


def may_start(state: str, counted_month: str | None, now: datetime) -> bool:
    """Whether a drop below the threshold starts a reload in `state`: armed, or capped in an
    earlier month (the new month's cap allows it again)."""
    return state == "armed" or (state == "capped" and counted_month != month_of(now))


def month_credits_now(counted_month: str | None, counted: Decimal, now: datetime) -> Decimal:
    """Credits reloaded in the current month (what was counted in an earlier month is not)."""
    return counted if counted_month == month_of(now) else Decimal(0)


def within_cap(cap: Decimal | None, reloaded_this_month: Decimal, credits: Decimal) -> bool:
    return cap is None or reloaded_this_month + credits <= cap


def pending_counts(state: str, pending_since: datetime | None, now: datetime) -> bool:
    return (
        state == "pending"
        and pending_since is not None
        and now - pending_since < PENDING_COUNTS_FOR
    )


def needs_requeue(
    state: str,
    charged: bool,
    pending_since: datetime | None,
    requeued_at: datetime | None,
    now: datetime,
) -> bool:
    """A pending reload nobody charged: old enough to send again, not too old to be safe."""
    if state != "pending" or charged or pending_since is None:
        return False
    age = now - pending_since
    if age < REQUEUE_AFTER or age >= REQUEUE_UNTIL:
        return False
    return requeued_at is None or now - requeued_at >= REQUEUE_AFTER


def _credits_field(value: Decimal | None, *, allow_none: bool = True) -> Decimal | None:
    if value is None:
        return value
    if not value.is_finite() or value <= 0 or value > MAX_ENTRY_CREDITS:
        raise ValueError(f"must be more than 0 and at most {MAX_ENTRY_CREDITS:,} credits")
    if value != quantize_credits(value):
        raise ValueError("credits have at most four decimal places")
    return value


class AutoReloadUpdate(Resource):
    """A change of the auto-reload settings: the fields given change, the others stay."""

    enabled: bool | None = Field(
        default=None,
        description="On or off. Turning it on needs a card saved at a checkout with "
        "`save_card`; turning it on again after a refused card re-arms it.",
    )
    threshold: Decimal | None = Field(
        default=None,
        description="Credits: a call's usage that takes the balance below this charges one reload.",
    )
    package: str | None = Field(
        default=None, description="What a reload buys: a package id from GET /v1/credits/packages."
    )
    monthly_cap: Decimal | None = Field(
        default=None,
        description="Most credits (bonus included) reloads may buy in a calendar month (UTC); "
        "null: no cap.",
    )

    @field_validator("threshold", "monthly_cap")
    @classmethod
    def _credits(cls, value: Decimal | None) -> Decimal | None:
        return _credits_field(value)


class PendingReload(BaseModel):
    sequence: int = Field(description="Which reload of the account this is (1, 2, …).")
    since: datetime
    credits: Credits = Field(description="What it buys, bonus included.")
    payment_id: str | None = Field(
        default=None, description="Stripe's PaymentIntent, once charged (pi_…)."
    )
    counts_until: datetime = Field(
        description="Until then a live call may draw against these credits before they land."
    )


class ReloadFailure(BaseModel):
    code: str = Field(
        description="`card_declined`, `authentication_required`, `no_saved_card`, or another "
        "Stripe failure code."
    )
    decline_code: str | None = None
    message: str
    sequence: int
    at: datetime


class AutoReload(BaseModel):
    """The account's auto-reload settings and what it is doing (GET /v1/credits/auto-reload)."""

    object: Literal["auto_reload"] = "auto_reload"
    enabled: bool = False
    threshold: Credits | None = None
    package: str | None = None
    package_credits: Credits | None = Field(
        default=None, description="What one reload adds, bonus included."
    )
    package_amount_cents: int | None = Field(default=None, description="What one reload costs.")
    monthly_cap: Credits | None = Field(
        default=None, description="Most credits reloads may buy in a calendar month (UTC)."
    )
    state: ReloadState = "off"
    state_message: str = STATE_MEANING["off"]
    month: str | None = Field(default=None, description="The month (YYYY-MM, UTC) counted.")
    reloaded_this_month: Credits = Field(
        default=Decimal(0), description="Credits charged by reloads this calendar month."
    )
    reloads: int = Field(default=0, description="Reloads started so far.")
    pending: PendingReload | None = None
    last_failure: ReloadFailure | None = None
    charging_now: bool = Field(
        default=False,
        description="In the answer of a change: the balance was already below the threshold, "
        "so a reload was started now.",
    )
    updated_at: datetime | None = None


class ReloadJob(BaseModel):
    """A billing-worker message: charge the account's reload number `sequence`."""

    account_id: str
    sequence: int
