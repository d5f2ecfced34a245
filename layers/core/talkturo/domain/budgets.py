"""Campaign budgets: the forecast of what a campaign will cost and how long it will call, and
the cap's rules (SPEC §8, docs/campaigns.md "Budget and forecast").

The forecast multiplies, for the contacts still to call, the attempts each is expected to need
(from the retry settings and how calls end), by what an attempt costs (the assistant's rate
per minute times the billed length of answered and voicemail calls; calls that are not
answered are not billed). How calls end and how long they last come from the account's recent
outbound calls when there are enough of them, else from the defaults below.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from talkturo.domain.campaigns import OUTCOMES, Campaign, CampaignBudget, Outcome, Retry
from talkturo.domain.common import Credits, quantize_credits

# How calls end and last when the account has too little history (documented in campaigns.md).
DEFAULT_SHARES: dict[Outcome, float] = {
    "answered": 0.35,
    "voicemail": 0.20,
    "no_answer": 0.35,
    "busy": 0.05,
    "error": 0.05,
}
DEFAULT_ANSWERED_SECONDS = 120.0
DEFAULT_VOICEMAIL_SECONDS = 30.0
# How long a call that is not answered holds its slot (ringing), billed nothing.
RING_SECONDS = 30.0
# The account's own history is used from this many ended outbound calls on.
MIN_HISTORY_CALLS = 20
# How many of the account's latest outbound calls are read for it.
HISTORY_CALLS = 100
# The federal calling floor (08:00-21:00 local) bounds every window.
FLOOR = (time(8, 0), time(21, 0))
# Calls in flight are counted at this many minutes each when deciding whether one more call
# fits under the cap.
IN_FLIGHT_MINUTES = Decimal(2)


class CallHistory(BaseModel):
    """How the account's calls end and how long the billed ones last."""

    source: Literal["account", "defaults"]
    calls: int = Field(description="Ended outbound calls it is based on (0 for the defaults).")
    shares: dict[Outcome, float]
    answered_seconds: float
    voicemail_seconds: float


def history_of(calls: Iterable[tuple[Outcome, int]]) -> CallHistory:
    """From (outcome, billed seconds) of ended calls; the defaults under MIN_HISTORY_CALLS."""
    seen = list(calls)
    if len(seen) < MIN_HISTORY_CALLS:
        return CallHistory(
            source="defaults",
            calls=0,
            shares=dict(DEFAULT_SHARES),
            answered_seconds=DEFAULT_ANSWERED_SECONDS,
            voicemail_seconds=DEFAULT_VOICEMAIL_SECONDS,
        )
    shares = {o: sum(1 for s, _ in seen if s == o) / len(seen) for o in OUTCOMES}

    def mean(outcome: Outcome, default: float) -> float:
        lengths = [seconds for s, seconds in seen if s == outcome]
        return sum(lengths) / len(lengths) if lengths else default

    return CallHistory(
        source="account",
        calls=len(seen),
        shares=shares,
        answered_seconds=mean("answered", DEFAULT_ANSWERED_SECONDS),
        voicemail_seconds=mean("voicemail", DEFAULT_VOICEMAIL_SECONDS),
    )


def expected_attempts(max_attempts: int, retry: Retry, history: CallHistory) -> float:
    """Attempts a contact is expected to need: another follows while the last one ended in a
    retried outcome, up to max_attempts (1 + q + q² + … with q the retried share)."""
    q = sum(history.shares.get(o, 0.0) for o in retry.outcomes)
    return sum(q**k for k in range(max_attempts))


def attempt_credits(rate_per_minute: Decimal, history: CallHistory) -> Decimal:
    """What one attempt is expected to cost."""
    billed = (
        history.shares.get("answered", 0.0) * history.answered_seconds
        + history.shares.get("voicemail", 0.0) * history.voicemail_seconds
    )
    return rate_per_minute * Decimal(str(billed)) / Decimal(60)


def attempt_seconds(history: CallHistory) -> float:
    """How long one attempt holds a slot."""
    answered = history.shares.get("answered", 0.0)
    voicemail = history.shares.get("voicemail", 0.0)
    return (
        answered * history.answered_seconds
        + voicemail * history.voicemail_seconds
        + (1 - answered - voicemail) * RING_SECONDS
    )


def _minutes(moment: time) -> int:
    return moment.hour * 60 + moment.minute


def window_hours(campaign: Campaign) -> float:
    """Hours a day the campaign may call: its window within the federal floor."""
    window = campaign.call_window
    floor_start, floor_end = _minutes(FLOOR[0]), _minutes(FLOOR[1])
    if window.allow_anytime:
        return (floor_end - floor_start) / 60
    start = _minutes(time.fromisoformat(window.start))
    end = _minutes(time.fromisoformat(window.end))
    spans = [(start, end)] if start < end else [(start, 24 * 60), (0, end)]
    inside = sum(max(0, min(e, floor_end) - max(s, floor_start)) for s, e in spans)
    return inside / 60


class CampaignForecast(BaseModel):
    object: Literal["campaign_forecast"] = "campaign_forecast"
    campaign_id: str
    status: str
    audience_status: str
    contacts: int = Field(
        description="Contacts still to call: the audience before the start, those pending, "
        "queued or calling once it runs."
    )
    expected_attempts_per_contact: float
    expected_calls: int
    credits_per_minute: Credits = Field(description="The assistant's rate (estimate_of).")
    credits_per_call: Credits = Field(description="What one attempt is expected to cost.")
    credits: Credits = Field(description="What the contacts still to call are expected to cost.")
    based_on: CallHistory = Field(description="How calls end and last, and where that is from.")
    calling_hours: float = Field(
        description="Time the calls take at max_concurrent_calls (slots full)."
    )
    window_hours_per_day: float = Field(
        description="Hours a day the window allows, within 08:00-21:00 local."
    )
    window_days: int = Field(
        description="Days of calling window needed (retry delays can add to it)."
    )
    balance: Credits
    balance_covers: bool = Field(description="The balance pays for the forecast credits.")
    credit_cap: Credits | None = None
    spent: Credits = Field(description="What the campaign's calls have cost so far.")
    cap_covers: bool | None = Field(
        default=None,
        description="spent + credits stays within credit_cap (null without a cap): otherwise "
        "the campaign pauses at its cap first.",
    )
    contacts_affordable: int = Field(
        description="How many of the contacts the balance (and the cap's remainder) pays for."
    )


def forecast(
    campaign: Campaign,
    *,
    contacts: int,
    rate_per_minute: Decimal,
    history: CallHistory,
    balance: Decimal,
    spent: Decimal,
) -> CampaignForecast:
    attempts = expected_attempts(campaign.max_attempts, campaign.retry, history)
    per_call = attempt_credits(rate_per_minute, history)
    per_contact = per_call * Decimal(str(attempts))
    credits = quantize_credits(per_contact * contacts)
    calls = contacts * attempts
    hours = calls * attempt_seconds(history) / campaign.max_concurrent_calls / 3600
    per_day = window_hours(campaign)
    days = math.ceil(hours / per_day) if per_day > 0 and contacts > 0 else 0
    money = balance
    cap_covers = None
    if campaign.credit_cap is not None:
        money = min(money, campaign.credit_cap - spent)
        cap_covers = spent + credits <= campaign.credit_cap
    affordable = contacts
    if per_contact > 0:
        affordable = max(0, min(contacts, int(money / per_contact)))
    return CampaignForecast(
        campaign_id=campaign.id,
        status=campaign.status,
        audience_status=campaign.audience_status,
        contacts=contacts,
        expected_attempts_per_contact=round(attempts, 3),
        expected_calls=math.ceil(calls),
        credits_per_minute=quantize_credits(rate_per_minute),
        credits_per_call=quantize_credits(per_call),
        credits=credits,
        based_on=history,
        calling_hours=round(hours, 2),
        window_hours_per_day=round(per_day, 2),
        window_days=days,
        balance=quantize_credits(balance),
        balance_covers=balance >= credits,
        credit_cap=campaign.credit_cap,
        spent=quantize_credits(spent),
        cap_covers=cap_covers,
        contacts_affordable=affordable,
    )


# --------------------------------------------------------------------------- the cap and burn


CapDecision = Literal["dial", "wait", "pause"]


def cap_decision(
    credit_cap: Decimal | None, spent: Decimal, in_flight: int, rate_per_minute: Decimal
) -> CapDecision:
    """Whether the dispatcher may place another call under the cap: `pause` once the spent
    credits reach it; `wait` while the calls in flight are expected to reach it (their ends
    dispatch again); else `dial`."""
    if credit_cap is None:
        return "dial"
    if spent >= credit_cap:
        return "pause"
    if in_flight > 0 and spent + in_flight * rate_per_minute * IN_FLIGHT_MINUTES >= credit_cap:
        return "wait"
    return "dial"


def burn_rate(charges: list[tuple[datetime, Decimal]], now: datetime) -> Decimal | None:
    """Credits an hour over (created, charged) of recent calls: their charge over the time
    from the oldest to now; None for fewer than two calls or under a minute."""
    if len(charges) < 2:
        return None
    oldest = min(created for created, _ in charges)
    seconds = (now - oldest).total_seconds()
    if seconds < 60:
        return None
    total = sum((charged for _, charged in charges), Decimal(0))
    return quantize_credits(total * Decimal(3600) / Decimal(str(seconds)))


def budget_of(
    credit_cap: Decimal | None,
    spent: Decimal,
    rate: Decimal | None,
    forecast_credits: Decimal,
    now: datetime,
) -> CampaignBudget:
    remaining = None if credit_cap is None else max(Decimal(0), credit_cap - spent)
    eta: datetime | None = None
    reason: Literal["completion", "credit_cap"] | None = None
    if rate is not None and rate > 0:
        need, reason = forecast_credits, "completion"
        if remaining is not None and remaining < need:
            need, reason = remaining, "credit_cap"
        eta = now + timedelta(hours=float(need / rate))
    return CampaignBudget(
        credit_cap=credit_cap,
        spent=quantize_credits(spent),
        remaining=None if remaining is None else quantize_credits(remaining),
        burn_rate_per_hour=rate,
        eta=eta,
        eta_reason=reason,
    )
