"""Calls: the record every call leaves, and how carrier events move it (SPEC §5).

Status only moves forward, `queued` → `ringing` → `in_progress` → `ended` (each has a rank; the
store refuses a write whose rank is not above the stored one), so duplicated and reordered
carrier callbacks are harmless: `apply` answers None for an event that changes nothing.

The end (status `ended`, outcome, ended reason, ended_at, duration) is written once. One thing
may still arrive after it: the answering-machine verdict (`answered_by`), which Twilio sends on
its own callback; a late `machine` verdict turns an `answered` outcome into `voicemail`.

Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from talkturo.domain.call_analysis import AnalysisBrief
from talkturo.domain.call_insights import CallMetrics, CostBreakdown
from talkturo.domain.common import Credits, Resource

CallStatus = Literal["queued", "ringing", "in_progress", "ended"]
CallDirection = Literal["inbound", "outbound"]
CallOutcome = Literal["answered", "voicemail", "no_answer", "busy", "failed"]
AnsweredBy = Literal["human", "machine", "unknown"]
# A transfer's progress: dialing the destination, the destination answered (warm: the
# supervisor picked up), completed (the caller was bridged to it; the bridge is over or the
# caller left the platform's hands), or why it failed.
TransferStatus = Literal[
    "dialing", "answered", "completed", "busy", "no_answer", "failed", "canceled"
]
TransferMode = Literal["cold", "warm"]
EndedReason = Literal[
    "caller_hung_up",
    "assistant_ended",
    "transferred",
    "max_duration",
    "no_credits",
    "silence_timeout",
    "voicemail",
    "no_answer",
    "busy",
    "failed",
    "canceled",
    "timeout",
    "error",
]

STATUS_RANK: dict[str, int] = {"queued": 0, "ringing": 1, "in_progress": 2, "ended": 3}
# Twilio's CallStatus values, in the platform's words: (status, outcome, ended reason).
TWILIO_STATUS: dict[str, tuple[CallStatus, CallOutcome | None, EndedReason | None]] = {
    "queued": ("queued", None, None),
    "initiated": ("queued", None, None),
    "ringing": ("ringing", None, None),
    "in-progress": ("in_progress", None, None),
    "completed": ("ended", "answered", "caller_hung_up"),
    "busy": ("ended", "busy", "busy"),
    "no-answer": ("ended", "no_answer", "no_answer"),
    "failed": ("ended", "failed", "failed"),
    "canceled": ("ended", "failed", "canceled"),
}
# How long past its maximum duration (plus ringing) a call may stay open before the timeout
# closer ends it: the carrier's final callback is late, not lost, until then.
RING_ALLOWANCE_SECONDS = 120
# A test call's from/to: placeholders in the +1 555 01xx range kept for fiction (nothing is
# dialled), and no phone number record of the account.
TEST_CALLER_NUMBER = "+15550100001"
TEST_ASSISTANT_NUMBER = "+15550100002"
TEST_PHONE_NUMBER_ID = "test"
TIMEOUT_MARGIN_SECONDS = 300


# --------------------------------------------------------------------------- conversation

TranscriptRole = Literal["assistant", "user", "system", "tool"]
SettledBy = Literal["voice_session", "carrier"]


class TranscriptToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class TranscriptMessage(BaseModel):
    """One entry of a call's transcript. Times are milliseconds since the call connected."""

    role: TranscriptRole
    text: str = ""
    start_ms: int
    end_ms: int
    interrupted: bool = Field(
        default=False,
        description="assistant: the caller spoke over it; `text` is what was heard before.",
    )
    tool_calls: list[TranscriptToolCall] | None = Field(
        default=None, description="assistant: the tools it called."
    )
    tool_call_id: str | None = Field(default=None, description="tool: the call answered.")
    name: str | None = Field(default=None, description="tool: the tool's name.")


class Transcript(BaseModel):
    object: Literal["transcript"] = "transcript"
    call_id: str
    messages: list[TranscriptMessage]


class Booking(BaseModel):
    """A meeting booked during the call through the assistant's scheduling tool."""

    provider: Literal["calcom", "calendly"]
    id: str = Field(description="The provider's id (Cal.com booking uid, Calendly invitee URI).")
    start: datetime
    end: datetime | None = None
    timezone: str | None = None
    attendee_name: str | None = None
    attendee_email: str | None = None
    url: str | None = Field(default=None, description="Where the booking can be seen or changed.")
    status: str = "accepted"


class Call(BaseModel):
    object: Literal["call"] = "call"
    id: str
    direction: CallDirection
    status: CallStatus
    outcome: CallOutcome | None = None
    ended_reason: EndedReason | None = None
    error_message: str | None = Field(
        default=None, description="Why the call failed, when the platform or carrier knows."
    )
    answered_by: AnsweredBy | None = Field(
        default=None, description="Answering-machine detection's verdict (outbound)."
    )
    assistant_id: str
    phone_number_id: str
    from_number: str = Field(description="E.164")
    to_number: str = Field(description="E.164")
    to_extension: str | None = Field(
        default=None,
        description="The extension of the number called, dialled as DTMF after the answer.",
    )
    contact_id: str | None = None
    company_id: str | None = None
    campaign_id: str | None = None
    attempt: int | None = None
    created_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = None
    credits_charged: Credits = Decimal(0)
    billed_seconds: int = Field(
        default=0,
        description="The connected seconds credits_charged pays for, by the voice session's clock.",
    )
    transcript_available: bool = Field(
        default=False, description="GET /v1/calls/{id}/transcript answers once the call connected."
    )
    recording_available: bool = Field(
        default=False, description="GET /v1/calls/{id}/recording gives a short-lived URL."
    )
    bookings: list[Booking] = Field(
        default_factory=list, description="Meetings booked during the call."
    )
    transferred_to: str | None = Field(
        default=None, description="The name of the destination the call was last transferred to."
    )
    transfer_status: TransferStatus | None = Field(
        default=None,
        description="That transfer's progress: dialing, answered, completed, or why it failed "
        "(busy, no_answer, failed, canceled).",
    )
    opted_out: bool = Field(
        default=False,
        description="The caller asked during this call not to be called again: their contact "
        "was marked do-not-call, and no campaign dials them again.",
    )
    settled_by: SettledBy | None = Field(
        default=None,
        description="Whose clock billed the call: voice_session (the connected seconds the "
        "voice service metered, the normal case) or carrier (the voice session ended without "
        "settling, so the carrier's duration billed it, once, after the call).",
    )
    metrics: CallMetrics | None = Field(
        default=None, description="The conversation's timing, written after the call."
    )
    cost: CostBreakdown | None = Field(
        default=None, description="What credits_charged paid for, written after the call."
    )
    analysis: AnalysisBrief | None = Field(
        default=None,
        description="The latest post-call analysis in brief (GET /v1/calls/{id}/analysis has "
        "it whole).",
    )
    test_run_id: str | None = Field(
        default=None,
        description="Set on a test call: the assistant's test run it belongs to. A test call "
        "reaches no carrier and no phone (a simulated caller talks to the assistant), draws no "
        "credits and is left out of call listings unless asked for.",
    )
    scenario: str | None = Field(default=None, description="A test call's scenario name.")
    test_seconds: int = Field(
        default=0,
        description="A test call's connected seconds, metered as test minutes instead of "
        "credits (its billed_seconds stay 0).",
    )


PRIVATE_FIELDS = frozenset(
    {
        "carrier_sid",
        "max_duration_seconds",
        "recording_key",
        "session_charges",
        "session_seconds",
        "transfer_mode",
        "transfer_leg_sid",
        "transfer_held",
        "voice_session_started",
        "analysis_requested",
    }
)


class CallRecord(Call):
    """What is stored: the answer plus the carrier's id and the limits the call runs under."""

    carrier_sid: str | None = None
    max_duration_seconds: int = 600
    recording_key: str | None = None
    # What each media stream of the call was charged, and for how many connected seconds (a
    # call that came back from a failed transfer has two); credits_charged and billed_seconds
    # are their sums.
    session_charges: dict[str, Credits] = Field(default_factory=dict)
    session_seconds: dict[str, int] = Field(default_factory=dict)
    # The transfer under way: cold or warm; warm: the supervisor leg's carrier id, and whether
    # the caller already waits in the conference (who sends the caller back when it fails).
    transfer_mode: TransferMode | None = None
    transfer_leg_sid: str | None = None
    transfer_held: bool = False
    # A voice session connected to the call (and metered it); with no session charge at the
    # end, that session died before settling and the post-call job settles the call.
    voice_session_started: bool = False
    # The last analysis version asked for (each re-analysis reserves the next one).
    analysis_requested: int = 0

    def public(self) -> Call:
        return Call.model_validate(self.model_dump(exclude=set(PRIVATE_FIELDS)))

    @property
    def is_test(self) -> bool:
        """A test call (services.test_calls): simulated caller, no carrier, no credits."""
        return self.test_run_id is not None

    @property
    def deadline(self) -> datetime:
        """When an open call is presumed over (its end never arrived)."""
        allowed = self.max_duration_seconds + RING_ALLOWANCE_SECONDS + TIMEOUT_MARGIN_SECONDS
        return self.created_at + timedelta(seconds=allowed)


class CallCreate(Resource):
    assistant_id: str = Field(min_length=1, max_length=64)
    to_number: str | None = Field(
        default=None,
        max_length=40,
        description="E.164 number to call (or give contact_id); an extension (ext9, x9, ;ext=9, "
        "#9) is dialled as DTMF after the answer.",
    )
    contact_id: str | None = Field(
        default=None, max_length=64, description="Contact to call, at their primary phone."
    )
    phone_number_id: str | None = Field(
        default=None,
        max_length=64,
        description="Caller ID: one of the account's active numbers (default: one of the "
        "assistant's active numbers).",
    )

    @model_validator(mode="after")
    def _one_destination(self) -> CallCreate:
        if (self.to_number is None) == (self.contact_id is None):
            raise ValueError("give exactly one of to_number and contact_id")
        return self


class DialJob(BaseModel):
    """The dial queue's message."""

    account_id: str
    call_id: str
    # A paced campaign dial: not placed before this moment (the queue's delay covers the whole
    # seconds of the wait, the dialer the rest).
    not_before: datetime | None = None


class CallEvent(BaseModel):
    """Something the carrier (or the platform) reports about a call."""

    at: datetime
    status: CallStatus | None = None
    outcome: CallOutcome | None = None
    ended_reason: EndedReason | None = None
    duration_seconds: int | None = None
    answered_by: AnsweredBy | None = None
    carrier_sid: str | None = None
    error_message: str | None = None


def answered_by_of(value: str | None) -> AnsweredBy | None:
    """Twilio's AnsweredBy (human, machine_start, machine_end_beep, …, fax, unknown)."""
    if not value:
        return None
    if value == "human":
        return "human"
    if value.startswith("machine") or value == "fax":
        return "machine"
    return "unknown"


def event_of_twilio(
    call_status: str | None,
    *,
    at: datetime,
    duration: str | None = None,
    answered_by: str | None = None,
    carrier_sid: str | None = None,
) -> CallEvent:
    """A status or AMD callback's parameters as an event (unknown statuses move nothing)."""
    status: CallStatus | None = None
    outcome: CallOutcome | None = None
    reason: EndedReason | None = None
    if call_status in TWILIO_STATUS:
        status, outcome, reason = TWILIO_STATUS[call_status]
    seconds: int | None = None
    if status == "ended":
        try:
            seconds = max(0, int(duration or 0))
        except ValueError:
            seconds = 0
    return CallEvent(
        at=at,
        status=status,
        outcome=outcome,
        ended_reason=reason,
        duration_seconds=seconds,
        answered_by=answered_by_of(answered_by),
        carrier_sid=carrier_sid,
    )


def apply(call: CallRecord, event: CallEvent) -> CallRecord | None:
    """The call after `event`, or None when the event changes nothing (late or duplicated)."""
    changes: dict[str, object] = {}
    if event.carrier_sid and not call.carrier_sid:
        changes["carrier_sid"] = event.carrier_sid
    answered_by = call.answered_by
    if event.answered_by and call.answered_by is None:
        answered_by = changes["answered_by"] = event.answered_by
    moves = event.status is not None and STATUS_RANK[event.status] > STATUS_RANK[call.status]
    if moves and event.status is not None:
        changes["status"] = event.status
        if event.status == "in_progress" and call.answered_at is None:
            changes["answered_at"] = event.at
        if event.status == "ended":
            outcome = event.outcome or "failed"
            duration = event.duration_seconds or 0
            if outcome == "answered" and answered_by == "machine":
                outcome = "voicemail"
            if outcome in ("answered", "voicemail") and call.answered_at is None:
                # Only the end was reported (an inbound call's status callback gets just
                # `completed`): the answer was CallDuration before it, and never before the
                # record existed (the carrier rounds CallDuration up to whole seconds).
                answered = event.at - timedelta(seconds=duration)
                changes["answered_at"] = max(answered, call.created_at)
            if outcome not in ("answered", "voicemail"):
                duration = 0
            reason = event.ended_reason or "error"
            if reason == "caller_hung_up" and call.transfer_status in ("answered", "completed"):
                # The carrier's `completed` after a transfer that went through.
                reason = "transferred"
            changes.update(
                outcome=outcome,
                ended_reason=reason,
                ended_at=event.at,
                duration_seconds=duration,
            )
            if event.error_message:
                changes["error_message"] = event.error_message
    elif call.status == "ended" and call.outcome == "answered" and "answered_by" in changes:
        changes["outcome"] = "voicemail" if answered_by == "machine" else call.outcome
    if not changes:
        return None
    return call.model_copy(update=changes)


# --------------------------------------------------------------------------- transfers

TRANSFER_FINAL = frozenset({"completed", "busy", "no_answer", "failed", "canceled"})
# Twilio's DialCallStatus (and a dialed leg's CallStatus) in the platform's words.
TWILIO_TRANSFER_STATUS: dict[str, TransferStatus] = {
    "completed": "completed",
    "answered": "completed",
    "busy": "busy",
    "no-answer": "no_answer",
    "failed": "failed",
    "canceled": "canceled",
}


def transfer_started(call: CallRecord, *, to: str, mode: TransferMode) -> CallRecord:
    """The call with a new transfer under way (a new attempt replaces an earlier one's state)."""
    return call.model_copy(
        update={
            "transferred_to": to,
            "transfer_status": "dialing",
            "transfer_mode": mode,
            "transfer_leg_sid": None,
            "transfer_held": False,
        }
    )


def transfer_moved(call: CallRecord, status: TransferStatus) -> CallRecord | None:
    """The call after its transfer reached `status`; None when that changes nothing.

    A transfer only moves forward (dialing → answered → completed, or dialing/answered → a
    failure) and ends once. On a call that already ended, a `completed` transfer still turns
    a plain hang-up into `transferred` (the carrier may report the call's end before the
    <Dial> action that says the caller was bridged), and a failure is still recorded; a
    supervisor answering after the call ended changes nothing.
    """
    current = call.transfer_status
    if current is None or current in TRANSFER_FINAL or current == status:
        return None
    if current == "answered" and status == "dialing":
        return None
    changes: dict[str, object] = {"transfer_status": status}
    if call.status == "ended":
        if status == "answered":
            return None
        if status == "completed":
            if call.ended_reason != "caller_hung_up":
                return None
            changes["ended_reason"] = "transferred"
    return call.model_copy(update=changes)


def timed_out(call: CallRecord, now: datetime) -> CallEvent:
    """The end of a call whose final callback never came."""
    answered = call.answered_at is not None
    seconds = int((now - call.answered_at).total_seconds()) if call.answered_at else 0
    return CallEvent(
        at=now,
        status="ended",
        outcome="answered" if answered else "failed",
        ended_reason="timeout",
        duration_seconds=min(seconds, call.max_duration_seconds),
        error_message=None if answered else "the carrier never reported the end of the call",
    )


class RecordingLink(BaseModel):
    object: Literal["recording"] = "recording"
    call_id: str
    url: str = Field(description="Short-lived: fetch it before expires_at.")
    expires_at: datetime
    content_type: Literal["audio/wav"] = "audio/wav"
    channels: list[str] = Field(
        default_factory=lambda: ["caller", "assistant"],
        description="Left channel first: the caller on the left, the assistant on the right.",
    )


class PostCallJob(BaseModel):
    """The post-call queue's message: the call ended (settle, then analyse it), or analyse it
    again (`version`: the analysis version to write, given when the re-run was asked for)."""

    account_id: str
    call_id: str | None = Field(default=None, description="None: a page of a run's calls.")
    version: int | None = None
    run_id: str | None = None
    cursor: str | None = Field(default=None, description="A run's page: where it starts.")
