"""Campaigns: batch outbound calling over CRM contacts (SPEC §8, docs/campaigns.md).

A campaign is a document (settings, status) plus one campaign contact per contact of its
audience. The rules here are pure: which status may follow which, what an outcome does to a
contact (completed, retried after its delay, exhausted), which caller ID a contact gets, what
the progress figures are. The engine that applies them is services/campaigns.py.

Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from talkturo.domain.accounts import is_timezone
from talkturo.domain.calls import CallOutcome
from talkturo.domain.common import Credits, Name, Resource, quantize_credits
from talkturo.domain.compliance import DAY_NAMES, CallWindow
from talkturo.domain.contacts import LeadStatus
from talkturo.domain.credits import MAX_ENTRY_CREDITS

CampaignStatus = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled"]
ContactState = Literal["pending", "queued", "calling", "completed", "exhausted", "skipped"]
SkipReason = Literal["dnc", "no_phone", "outside_compliance", "invalid_number"]
# A call's outcome as a campaign counts it: the call's `failed` is an `error` here.
Outcome = Literal["answered", "voicemail", "no_answer", "busy", "error"]
RetryOutcome = Literal["no_answer", "busy", "error", "voicemail"]
AudienceStatus = Literal["building", "ready", "failed"]
DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAY_NAMES: tuple[DayName, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

TERMINAL: frozenset[str] = frozenset({"completed", "cancelled"})
# Where each action may start from, and where it leads (start: `scheduled` when the start
# time is still ahead).
TRANSITIONS: dict[str, tuple[frozenset[str], CampaignStatus]] = {
    "start": (frozenset({"draft", "scheduled"}), "running"),
    "schedule": (frozenset({"draft"}), "scheduled"),
    "pause": (frozenset({"running"}), "paused"),
    "resume": (frozenset({"paused"}), "running"),
    "cancel": (frozenset({"draft", "scheduled", "running", "paused"}), "cancelled"),
    "complete": (frozenset({"running"}), "completed"),
}
EDITABLE: frozenset[str] = frozenset({"draft", "paused"})
# Settings that change how and when contacts are dialled: only while nothing dials.
DIAL_SETTINGS = frozenset(
    {
        "call_window",
        "retry",
        "max_concurrent_calls",
        "max_attempts",
        "phone_number_ids",
        "scheduled_start_at",
        "ai_disclosure",
    }
)
CONTACT_STATES: tuple[ContactState, ...] = (
    "pending",
    "queued",
    "calling",
    "completed",
    "exhausted",
    "skipped",
)
SKIP_REASONS: tuple[SkipReason, ...] = ("dnc", "no_phone", "outside_compliance", "invalid_number")
OUTCOMES: tuple[Outcome, ...] = ("answered", "voicemail", "no_answer", "busy", "error")
MAX_CONTACT_IDS = 10_000
HISTORY_LIMIT = 10  # attempts kept on a campaign contact (max_attempts is at most 10)


def outcome_of(call_outcome: CallOutcome | None) -> Outcome:
    """A call's outcome in the campaign's words (no outcome at all is an error)."""
    if call_outcome in ("answered", "voicemail", "no_answer", "busy"):
        return call_outcome
    return "error"


# --------------------------------------------------------------------------- settings


class Audience(BaseModel):
    """Who is called: one company's contacts, a list of contacts, or a filter (tag and/or lead
    status; neither: every contact). Contacts without a phone or on the DNC list are counted as
    skipped with the reason."""

    type: Literal["company", "contacts", "filter"]
    company_id: str | None = Field(default=None, max_length=64)
    contact_ids: list[str] | None = Field(default=None, max_length=MAX_CONTACT_IDS)
    tag: str | None = Field(default=None, max_length=50)
    lead_status: LeadStatus | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Audience:
        if self.type == "company" and not self.company_id:
            raise ValueError("an audience of type company needs company_id")
        if self.type == "contacts" and not self.contact_ids:
            raise ValueError("an audience of type contacts needs contact_ids (at least one)")
        if self.type != "company" and self.company_id:
            raise ValueError("company_id belongs to an audience of type company")
        if self.type != "contacts" and self.contact_ids:
            raise ValueError("contact_ids belong to an audience of type contacts")
        if self.type != "filter" and (self.tag or self.lead_status):
            raise ValueError("tag and lead_status belong to an audience of type filter")
        if self.contact_ids:
            self.contact_ids = list(dict.fromkeys(self.contact_ids))
        return self


_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class Window(BaseModel):
    """When calls may start, before the compliance floor (which always applies)."""

    start: str = Field(default="09:00", pattern=_HHMM, description="HH:MM local")
    end: str = Field(
        default="17:00",
        pattern=_HHMM,
        description="HH:MM local, exclusive; at or before start: runs past midnight.",
    )
    allow_anytime: bool = Field(
        default=False, description="00:00-24:00 (the days and the compliance floor still apply)."
    )
    timezone: str = Field(default="America/New_York", max_length=64)
    use_contact_timezone: bool = Field(
        default=True, description="Read the window in each contact's own local time."
    )
    days: list[DayName] = Field(default_factory=lambda: list(ALL_DAY_NAMES), min_length=1)

    @field_validator("timezone")
    @classmethod
    def _real_zone(cls, value: str) -> str:
        if not is_timezone(value):
            raise ValueError(f"{value!r} is not an IANA timezone such as America/New_York")
        return value

    @model_validator(mode="after")
    def _opens(self) -> Window:
        if self.start == self.end and not self.allow_anytime:
            raise ValueError("a window that ends when it starts never opens")
        self.days = [d for d in ALL_DAY_NAMES if d in set(self.days)]
        return self

    def rule(self) -> CallWindow:
        return CallWindow(
            start=time.fromisoformat(self.start),
            end=time.fromisoformat(self.end),
            days=frozenset(DAY_NAMES.index(d) for d in self.days),
            timezone=self.timezone,
            use_contact_timezone=self.use_contact_timezone,
            allow_anytime=self.allow_anytime,
        )


DEFAULT_RETRIED: tuple[RetryOutcome, ...] = ("no_answer", "busy", "error")


def _default_delays() -> dict[RetryOutcome, int]:
    return {"no_answer": 300, "busy": 600, "error": 3600, "voicemail": 3600}


class Retry(BaseModel):
    delays: dict[RetryOutcome, int] = Field(
        default_factory=_default_delays,
        description="Seconds before the next attempt after each outcome (60 s to 30 days).",
    )
    outcomes: list[RetryOutcome] = Field(
        default_factory=lambda: list(DEFAULT_RETRIED),
        description="The outcomes that are retried (while attempts remain).",
    )

    @field_validator("delays")
    @classmethod
    def _bounded(cls, value: dict[RetryOutcome, int]) -> dict[RetryOutcome, int]:
        for outcome, seconds in value.items():
            if not 60 <= seconds <= 30 * 86400:
                raise ValueError(f"the {outcome} delay must be 60 to 2592000 seconds")
        return {**_default_delays(), **value}

    @field_validator("outcomes")
    @classmethod
    def _unique(cls, value: list[RetryOutcome]) -> list[RetryOutcome]:
        return list(dict.fromkeys(value))


class _Settings(Resource):
    description: Name | None = Field(default=None, max_length=1000)
    phone_number_ids: list[str] | None = Field(
        default=None,
        max_length=50,
        description="Caller IDs to rotate across contacts: numbers of the assistant "
        "(default: all its active numbers).",
    )
    call_window: Window | None = None
    scheduled_start_at: datetime | None = Field(
        default=None, description="`start` before this time schedules the campaign."
    )
    max_concurrent_calls: int | None = Field(default=None, ge=1, le=10)
    max_attempts: int | None = Field(default=None, ge=1, le=10)
    retry: Retry | None = None
    ai_disclosure: bool | None = Field(
        default=None, description="The assistant says it is an AI in its first message."
    )
    require_passing_tests: bool | None = Field(
        default=None,
        description="Start only when a test run of the assistant's current configuration "
        "passed (docs/test-runs.md); changing the assistant asks for a new passing run.",
    )
    credit_cap: Decimal | None = Field(
        default=None,
        gt=0,
        le=MAX_ENTRY_CREDITS,
        description="Credits the campaign's calls may spend: it pauses itself when they reach "
        "it (calls under way finish). Changeable at any time; null removes it.",
    )

    @field_validator("credit_cap")
    @classmethod
    def _cap_places(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value != quantize_credits(value):
            raise ValueError("credits have at most four decimal places")
        return value


class CampaignCreate(_Settings):
    name: Name = Field(min_length=1, max_length=200)
    assistant_id: str = Field(min_length=1, max_length=64)
    audience: Audience


class CampaignUpdate(_Settings):
    name: Name | None = Field(default=None, min_length=1, max_length=200)


# --------------------------------------------------------------------------- the campaign


def _zero(names: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(names, 0)


class Campaign(BaseModel):
    object: Literal["campaign"] = "campaign"
    id: str
    name: str
    description: str | None = None
    status: CampaignStatus = "draft"
    status_reason: str | None = Field(
        default=None, description="Why the status last changed when the platform changed it."
    )
    assistant_id: str
    phone_number_ids: list[str]
    audience: Audience
    call_window: Window = Field(default_factory=Window)
    scheduled_start_at: datetime | None = None
    max_concurrent_calls: int = 1
    max_attempts: int = 3
    retry: Retry = Field(default_factory=Retry)
    ai_disclosure: bool = True
    require_passing_tests: bool = False
    credit_cap: Credits | None = Field(
        default=None, description="Pauses the campaign when its calls have spent this much."
    )
    audience_status: AudienceStatus = "building"
    audience_total: int = 0
    counts: dict[ContactState, int] = Field(default_factory=lambda: _zero(CONTACT_STATES))  # type: ignore[arg-type]
    skipped: dict[SkipReason, int] = Field(default_factory=lambda: _zero(SKIP_REASONS))  # type: ignore[arg-type]
    outcomes: dict[Outcome, int] = Field(default_factory=lambda: _zero(OUTCOMES))  # type: ignore[arg-type]
    answer_rate: float | None = Field(
        default=None, description="Answered calls over calls ended, voicemail excluded."
    )
    completion_rate: float | None = Field(
        default=None, description="Contacts completed, exhausted or skipped over the audience."
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None


class CampaignCounters(BaseModel):
    """The live figures, kept beside the document as counters (moved by ADD)."""

    audience_total: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    skipped: dict[str, int] = Field(default_factory=dict)
    outcomes: dict[str, int] = Field(default_factory=dict)
    in_flight: int = 0


def with_figures(campaign: Campaign, counters: CampaignCounters) -> Campaign:
    counts = {s: max(0, counters.counts.get(s, 0)) for s in CONTACT_STATES}
    skipped = {r: max(0, counters.skipped.get(r, 0)) for r in SKIP_REASONS}
    outcomes = {o: max(0, counters.outcomes.get(o, 0)) for o in OUTCOMES}
    ended = sum(outcomes.values()) - outcomes["voicemail"]
    total = counters.audience_total
    done = counts["completed"] + counts["exhausted"] + counts["skipped"]
    return campaign.model_copy(
        update={
            "audience_total": total,
            "counts": counts,
            "skipped": skipped,
            "outcomes": outcomes,
            "answer_rate": round(outcomes["answered"] / ended, 4) if ended else None,
            "completion_rate": round(done / total, 4) if total else None,
        }
    )


def transition(campaign: Campaign, action: str) -> CampaignStatus | None:
    """The status `action` leads to, or None when it may not happen from the current one."""
    sources, target = TRANSITIONS[action]
    return target if campaign.status in sources else None


def nobody_left(counters: CampaignCounters, audience_ready: bool) -> bool:
    """True when the campaign has no contact waiting or in flight (it is complete)."""
    live = sum(counters.counts.get(s, 0) for s in ("pending", "queued", "calling"))
    return audience_ready and live <= 0 and counters.in_flight <= 0


# --------------------------------------------------------------------------- campaign contacts


class Attempt(BaseModel):
    attempt: int
    call_id: str
    dialed_at: datetime
    outcome: Outcome | None = None
    rule: str = Field(description="What allowed the dial (the compliance audit).")
    timezone: str | None = None
    local_time: str | None = Field(default=None, description="The callee's wall clock, ISO 8601.")


class CampaignContact(BaseModel):
    object: Literal["campaign_contact"] = "campaign_contact"
    campaign_id: str
    contact_id: str
    name: str | None = None
    phone: str | None = None
    state: ContactState = "pending"
    skip_reason: SkipReason | None = None
    skip_detail: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    caller_phone_number_id: str | None = Field(
        default=None, description="The caller ID this contact is called from, on every attempt."
    )
    last_call_id: str | None = None
    last_outcome: Outcome | None = None
    history: list[Attempt] = Field(default_factory=list)
    position: int = Field(
        default=0, description="The contact's place in the audience (the caller-ID rotation's)."
    )


def display_name(first: str | None, last: str | None) -> str | None:
    return " ".join(p for p in (first, last) if p) or None


def caller_for(contact: CampaignContact, rotation: list[str], active: set[str]) -> str | None:
    """The contact's caller ID: the one it had (while still active), else the next active
    number of the rotation from its position in the audience."""
    if contact.caller_phone_number_id in active:
        return contact.caller_phone_number_id
    if not rotation:
        return None
    for step in range(len(rotation)):
        number = rotation[(contact.position + step) % len(rotation)]
        if number in active:
            return number
    return None


class AfterCall(BaseModel):
    state: ContactState
    next_attempt_at: datetime | None


def after_call(
    contact: CampaignContact,
    outcome: Outcome,
    *,
    ended_at: datetime,
    max_attempts: int,
    retry: Retry,
    delay_scale: float = 1.0,
    opted_out: bool = False,
) -> AfterCall:
    """What a call's outcome does to its contact: answered (or an opt-out) completes it; a
    retried outcome with attempts left waits its delay; anything else exhausts it."""
    if outcome == "answered" or opted_out:
        return AfterCall(state="completed", next_attempt_at=None)
    if outcome in retry.outcomes and contact.attempts < max_attempts:
        delay = timedelta(seconds=retry.delays[outcome] * delay_scale)
        return AfterCall(state="pending", next_attempt_at=ended_at + delay)
    return AfterCall(state="exhausted", next_attempt_at=None)


def audit_text(rule: str, attempt: int, max_attempts: int) -> str:
    return f"{rule}; DNC checked; attempt {attempt} of {max_attempts}"


# --------------------------------------------------------------------------- progress


class QueueEntry(BaseModel):
    contact_id: str
    name: str | None = None
    phone: str | None = None
    next_attempt_at: datetime | None = None
    attempt: int = Field(description="The attempt it will be (1 for a first call).")


class RecentCall(BaseModel):
    call_id: str
    contact_id: str | None = None
    attempt: int | None = None
    status: str
    outcome: str | None = None
    created_at: datetime


class CampaignBudget(BaseModel):
    credit_cap: Credits | None = None
    spent: Credits = Field(description="What the campaign's calls have cost so far.")
    remaining: Credits | None = Field(
        default=None, description="credit_cap - spent (never below 0); null without a cap."
    )
    burn_rate_per_hour: Credits | None = Field(
        default=None,
        description="Credits an hour, over the campaign's latest calls; null before there are two.",
    )
    eta: datetime | None = Field(
        default=None,
        description="When, at this burn rate, the forecast credits are spent or the cap is "
        "reached, whichever comes first.",
    )
    eta_reason: Literal["completion", "credit_cap"] | None = None


class CampaignProgress(BaseModel):
    object: Literal["campaign_progress"] = "campaign_progress"
    campaign_id: str
    status: CampaignStatus
    status_reason: str | None = None
    audience_status: AudienceStatus
    audience_total: int
    counts: dict[ContactState, int]
    skipped: dict[SkipReason, int]
    outcomes: dict[Outcome, int]
    answer_rate: float | None = None
    completion_rate: float | None = None
    in_flight: int = Field(description="Calls holding one of the campaign's slots now.")
    max_concurrent_calls: int
    queue: list[QueueEntry] = Field(description="The next contacts due, soonest first.")
    recent_calls: list[RecentCall] = Field(description="The campaign's latest calls.")
    budget: CampaignBudget = Field(description="What it has spent, its cap, burn rate and ETA.")


# --------------------------------------------------------------------------- jobs

JobType = Literal["build", "start", "dispatch", "call_ended", "purge"]


class CampaignJob(BaseModel):
    """A campaign queue message (events/campaign_job.json)."""

    type: JobType
    account_id: str
    campaign_id: str
    call_id: str | None = None
    cursor: str | None = None  # build: where the next audience page starts
    position: int = 0  # build: the audience position of the page's first contact
    final: bool = False  # call_ended: the carrier reported the call over
