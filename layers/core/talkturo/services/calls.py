"""Calls: place one outbound call, dial it (SQS worker), record what the carrier reports,
answer inbound calls, close calls whose end never arrived, list and read.

The carrier is a parameter of the functions that talk to it (`carrier: Carrier | None`); by
default it is the process's carrier (`talkturo.carrier.get_carrier()`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError

from talkturo import queues
from talkturo.config import get_settings
from talkturo.domain.calls import (
    Call,
    CallCreate,
    CallDirection,
    CallEvent,
    CallOutcome,
    CallRecord,
    DialJob,
    EndedReason,
    PostCallJob,
    RecordingLink,
    Transcript,
    TranscriptMessage,
    apply,
    timed_out,
)
from talkturo.domain.common import Page, utcnow
from talkturo.domain.dialing import Destination, dtmf_of
from talkturo.domain.events import MAX_EVENT_BYTES
from talkturo.domain.phones import InvalidPhone, normalise_phone
from talkturo.domain.telephony import CallRequest
from talkturo.errors import Conflict, InsufficientCredits, InvalidRequest, NotFound
from talkturo.ids import has_prefix, new_id
from talkturo.logs import logger
from talkturo.services import assistants, credits, dialing, events, numbers
from talkturo.store import calls as store
from talkturo.store import contacts as contact_store

if TYPE_CHECKING:
    from talkturo.carrier.base import Carrier
    from talkturo.domain.assistants import AssistantRecord
    from talkturo.domain.calls import Booking
    from talkturo.domain.numbers import PhoneNumberRecord

# How many past hours of the open-call index the timeout closer reads (it runs every 5 min).
CLOSER_LOOKBACK_HOURS = 48
RING_TIMEOUT_SECONDS = 30


def change(
    account_id: str, call_id: str, fn: Callable[[CallRecord], CallRecord | None]
) -> CallRecord:
    """store.change, and the customer events of what it changed: every change of a call's
    record goes through here."""
    seen: list[CallRecord] = []

    def observed(record: CallRecord) -> CallRecord | None:
        seen[:] = [record]
        return fn(record)

    after = store.change(account_id, call_id, observed)
    if seen:
        announce(account_id, seen[0], after)
    return after


def _end_announced(record: CallRecord) -> bool:
    """Whether `call.ended` goes out for this record now: it has ended and its transcript is
    saved, or it never connected (no transcript will come), or it was closed as timed out.
    An answered call whose voice session never saved is announced by its post-call job."""
    return record.status == "ended" and (
        record.transcript_available
        or record.answered_at is None
        or record.ended_reason == "timeout"
    )


def announce(account_id: str, before: CallRecord, after: CallRecord) -> None:
    """`call.started` when the call is answered, `call.ended` (with its transcript) when it is
    over; each once per call (keyed on the call id). A test call announces nothing: the
    customer's event subscribers hear of real calls only."""
    if after.is_test:
        return
    if after.status == "in_progress" and before.status not in ("in_progress", "ended"):
        events.emit(
            account_id,
            "call.started",
            {"call": after.public().model_dump(mode="json")},
            key=f"call.started:{after.id}",
        )
    if _end_announced(after) and not _end_announced(before):
        announce_ended(account_id, after)


def announce_ended(account_id: str, record: CallRecord) -> None:
    """`call.ended` for an ended call, with its transcript when one was saved (the post-call
    job calls this for a call whose voice session never saved; a second call sends nothing)."""

    def data() -> dict[str, object]:
        saved = record.transcript_available
        messages = get_transcript_messages(account_id, record.id) if saved else []
        return ended_event_data(record.public(), messages)

    events.emit(account_id, "call.ended", data, key=f"call.ended:{record.id}")


def ended_event_data(call: Call, messages: list[TranscriptMessage]) -> dict[str, object]:
    """The `call.ended` payload: the call and its transcript, the transcript cut from the end
    when the whole would not fit in one event (`transcript_truncated`)."""
    shown = [m.model_dump(mode="json") for m in messages]
    budget = MAX_EVENT_BYTES - len(call.model_dump_json()) - 1000
    kept, size = [], 0
    for message in shown:
        size += len(json.dumps(message, ensure_ascii=False).encode()) + 1
        if size > budget:
            break
        kept.append(message)
    return {
        "call": call.model_dump(mode="json"),
        "transcript": kept,
        "transcript_truncated": len(kept) < len(shown),
    }


def carrier_of(carrier: Carrier | None = None) -> Carrier:
    if carrier is not None:
        return carrier
    from talkturo.carrier import get_carrier

    return get_carrier()


# --------------------------------------------------------------------------- reads


def _check_id(call_id: str) -> None:
    if not has_prefix(call_id, "call"):
        raise NotFound("no such call", param="id")


def get(account_id: str, call_id: str) -> Call:
    _check_id(call_id)
    return store.get(account_id, call_id).public()


def get_record(account_id: str, call_id: str) -> CallRecord:
    _check_id(call_id)
    return store.get(account_id, call_id)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID_MAX_MS = (1 << 48) - 1


def _ulid_bound(moment: datetime, *, low: bool) -> str:
    """The smallest (or largest) call id a ULID of this millisecond can have."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a time without zone is UTC, as the API says
    ms = min(max(int(moment.timestamp() * 1000), 0), _ULID_MAX_MS)
    stamp = "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -5, -5))
    return "call_" + stamp + ("0" * 16 if low else "Z" * 16)


def list_calls(
    account_id: str,
    *,
    limit: int,
    starting_after: str | None,
    assistant_id: str | None = None,
    phone_number_id: str | None = None,
    contact_id: str | None = None,
    campaign_id: str | None = None,
    direction: CallDirection | None = None,
    outcome: CallOutcome | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    test_run_id: str | None = None,
    include_tests: bool = False,
) -> Page[Call]:
    """Newest first; test calls (services.test_calls) only when asked for: `include_tests`, or
    the calls of one test run by `test_run_id`."""
    if created_after and created_before and created_after > created_before:
        raise InvalidRequest("created_after must be before created_before", param="created_after")
    filters = {
        name: value
        for name, value in (
            ("assistant_id", assistant_id),
            ("phone_number_id", phone_number_id),
            ("contact_id", contact_id),
            ("campaign_id", campaign_id),
            ("direction", direction),
            ("outcome", outcome),
            ("test_run_id", test_run_id),
        )
        if value is not None
    }
    records, cursor = store.list_page(
        account_id,
        limit=limit,
        starting_after=starting_after,
        filters=filters,
        sk_after=_ulid_bound(created_after, low=True) if created_after else None,
        sk_before=_ulid_bound(created_before, low=False) if created_before else None,
        include_tests=include_tests,
    )
    return Page[Call](
        data=[r.public() for r in records], has_more=cursor is not None, next_cursor=cursor
    )


# --------------------------------------------------------------------------- outbound


def _caller_id(
    account_id: str, assistant: AssistantRecord, phone_number_id: str | None
) -> PhoneNumberRecord:
    if phone_number_id is not None:
        try:
            number = numbers.get_record(account_id, phone_number_id)
        except NotFound:
            raise NotFound("no such phone number", param="phone_number_id") from None
        if number.status != "active":
            raise Conflict(
                f"the caller ID must be an active number; this one is {number.status}",
                param="phone_number_id",
                code="number_not_active",
            )
        return number
    for number_id in assistant.phone_number_ids:
        try:
            number = numbers.get_record(account_id, number_id)
        except NotFound:
            continue
        if number.status == "active":
            return number
    raise Conflict(
        "the assistant has no active phone number to call from; assign one, or give "
        "phone_number_id",
        param="phone_number_id",
        code="no_active_number",
    )


def create_outbound(account_id: str, request: CallCreate) -> Call:
    """Record the call as queued and put it on the dial queue; refused with a clear error when
    outbound is disabled, no number can be the caller ID, the contact is DNC or no credits."""
    assistant = assistants.outbound_record(account_id, request.assistant_id)
    caller = _caller_id(account_id, assistant, request.phone_number_id)
    lines = dialing.lines_of(account_id)
    contact_id = request.contact_id
    destination: Destination | None = None
    if request.to_number is not None:
        destination = dialing.check(
            account_id, request.to_number, caller_id=caller.phone_number, lines=lines
        )
        contact_id = contact_store.find_by_phone(account_id, destination.number)
    contact = None
    if contact_id is not None:
        try:
            contact = contact_store.get(account_id, contact_id)
        except NotFound:
            raise NotFound("no such contact", param="contact_id") from None
        if contact.do_not_call:
            raise Conflict(
                "the contact is on the do-not-call list",
                param="contact_id" if request.contact_id else "to_number",
                code="contact_do_not_call",
            )
        if request.contact_id is not None:
            if not contact.phone:
                raise InvalidRequest(
                    "the contact has no phone number", param="contact_id", code="no_phone_number"
                )
            destination = dialing.check(
                account_id,
                contact.phone,
                caller_id=caller.phone_number,
                param="contact_id",
                lines=lines,
            )
    assert destination is not None  # CallCreate holds exactly one of to_number and contact_id
    if credits.balance(account_id).balance <= 0:
        raise InsufficientCredits("the account has no credits left; buy credits to place calls")
    record = CallRecord(
        id=new_id("call"),
        direction="outbound",
        status="queued",
        assistant_id=assistant.id,
        phone_number_id=caller.id,
        from_number=caller.phone_number,
        to_number=destination.number,
        to_extension=destination.extension,
        contact_id=contact.id if contact else None,
        company_id=contact.company_id if contact else None,
        created_at=utcnow(),
        max_duration_seconds=assistant.telephony.max_call_duration_seconds,
    )
    store.create(account_id, record)
    try:
        queues.send(
            get_settings().dial_queue_url,
            DialJob(account_id=account_id, call_id=record.id).model_dump(),
        )
    except (BotoCoreError, ClientError, RuntimeError):
        logger.exception("the call could not be queued", extra={"id": record.id})
        _end_failed(account_id, record.id, "the call could not be queued")
        raise
    return record.public()


def callback_url(kind: str, account_id: str, call_id: str) -> str:
    base = get_settings().public_base_url.rstrip("/")
    return f"{base}/carrier/{kind}?" + urlencode({"call": call_id, "account": account_id})


def _end_failed(
    account_id: str, call_id: str, message: str, reason: EndedReason = "error"
) -> CallRecord:
    event = CallEvent(
        at=utcnow(),
        status="ended",
        outcome="failed",
        ended_reason=reason,
        duration_seconds=0,
        error_message=message,
    )
    after = change(account_id, call_id, lambda r: apply(r, event))
    if after.campaign_id:
        _tell_campaign(account_id, after, final=True)  # it never reached the carrier
    return after


def dial(job: DialJob, carrier: Carrier | None = None) -> None:
    """Place the call at the carrier, once: a conditional write claims the dial first, so a
    redelivered message never dials twice. A carrier refusal ends the call as failed; a
    retryable carrier error gives the claim back and raises (the message comes back)."""
    try:
        record = store.get(job.account_id, job.call_id)
    except NotFound:
        logger.warning("call to dial is gone", extra={"id": job.call_id})
        return
    if record.status != "queued":
        return
    if job.not_before is not None:
        # A paced dial: the queue's delay was whole seconds; wait the fraction left (< 1 s).
        wait = (job.not_before - utcnow()).total_seconds()
        if 0 < wait <= 1:
            time.sleep(wait)
    _place(job, record, None, carrier)


def dial_claimed(
    account_id: str, record: CallRecord, assistant: AssistantRecord, carrier: Carrier | None = None
) -> None:
    """Place a call a campaign has just claimed, in the worker that claimed it: no queue hop
    before the carrier, and no reading again of the record and assistant it holds. The dial job
    queued beside the claim is the backstop (a crash here, a retryable carrier error): it finds
    the call dialled and does nothing, or dials it once."""
    _place(DialJob(account_id=account_id, call_id=record.id), record, assistant, carrier)


def _place(
    job: DialJob,
    record: CallRecord,
    assistant: AssistantRecord | None,
    carrier: Carrier | None,
) -> None:
    from talkturo.carrier.base import CarrierError

    claim = utcnow().isoformat()
    if not store.claim_dial(job.account_id, job.call_id, claim):
        logger.info("call already dialed", extra={"id": job.call_id})
        return
    if assistant is None:
        try:
            assistant = assistants.get_record(job.account_id, record.assistant_id)
        except NotFound:
            _end_failed(job.account_id, job.call_id, "the assistant was deleted before dialing")
            return
    if record.contact_id and _now_do_not_call(job.account_id, record.contact_id):
        # Marked between the call's creation (or a campaign's claim) and this moment.
        _end_failed(
            job.account_id,
            job.call_id,
            "the contact was marked do-not-call before the call was dialled",
            reason="canceled",
        )
        return
    voicemail = assistant.telephony.voicemail
    request = CallRequest(
        to=record.to_number,
        from_=record.from_number,
        answer_url=callback_url("voice", job.account_id, job.call_id),
        status_callback_url=callback_url("status", job.account_id, job.call_id),
        amd_callback_url=callback_url("amd", job.account_id, job.call_id),
        machine_detection=voicemail.detect,
        machine_detection_mode="DetectMessageEnd"
        if voicemail.action == "leave_message"
        else "Enable",
        timeout_seconds=RING_TIMEOUT_SECONDS,
        send_digits=dtmf_of(record.to_extension),
    )
    try:
        placed = carrier_of(carrier).place_call(request)
    except CarrierError as error:
        if error.retryable:
            store.release_dial(job.account_id, job.call_id, claim)
            raise
        _end_failed(job.account_id, job.call_id, error.message, reason="failed")
        return
    event = CallEvent(at=utcnow(), carrier_sid=placed.carrier_sid)
    change(job.account_id, job.call_id, lambda r: apply(r, event))
    logger.info("call dialed", extra={"id": job.call_id})


def _now_do_not_call(account_id: str, contact_id: str) -> bool:
    try:
        return contact_store.get(account_id, contact_id).do_not_call
    except NotFound:
        return False


# --------------------------------------------------------------------------- carrier events


def record_event(
    account_id: str, call_id: str, event: CallEvent, *, session_started: bool = False
) -> CallRecord | None:
    """Apply what the carrier reported; None when the call does not exist (not ours).
    `session_started`: the event is a voice session's start (its stream is up).

    A call that ends here gets its post-call job queued, delayed: when it had a live voice
    session, that session is still saving the transcript and recording, and queues the job
    itself at once when done (the job is queued once, whoever is first)."""
    was_open = False
    was_answered = False

    def move(record: CallRecord) -> CallRecord | None:
        nonlocal was_open, was_answered
        was_open = record.status != "ended"
        was_answered = record.status in ("in_progress", "ended")
        after = apply(record, event)
        if session_started and not record.voice_session_started:
            after = (after or record).model_copy(update={"voice_session_started": True})
        return after

    try:
        after = change(account_id, call_id, move)
    except NotFound:
        return None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="post-call") as pool:
        # Queued beside the campaign's part below: a freed campaign slot does not wait on it.
        post_call = (
            pool.submit(queue_post_call, account_id, call_id, delay_seconds=POST_CALL_DELAY_SECONDS)
            if was_open and after.status == "ended" and not after.is_test
            else None
        )
        _tell_campaign_of_event(account_id, after, event, was_open, was_answered)
    if post_call is not None:
        post_call.result()  # its failure is the callback's, as before
    return after


def _tell_campaign_of_event(
    account_id: str, after: CallRecord, event: CallEvent, was_open: bool, was_answered: bool
) -> None:
    if after.campaign_id:
        if event.status == "ended":
            # The carrier's own final word frees the call's campaign slot (a voice session
            # ends the call in the record a moment before the carrier has hung up), and the
            # slot is refilled here, in the carrier's callback.
            from talkturo.services import campaigns

            campaigns.end_call(account_id, after)
        elif event.status == "in_progress" and not was_answered:
            _tell_campaign(account_id, after, final=False)  # its contact is now `calling`
        elif event.answered_by is not None and not was_open:
            _tell_campaign(account_id, after, final=False)  # a verdict after the end


def _tell_campaign(account_id: str, record: CallRecord, *, final: bool) -> None:
    from talkturo.services import campaigns

    campaigns.notify_call(account_id, record, final=final)


def find_by_carrier_sid(carrier_sid: str) -> tuple[str, str] | None:
    return store.by_carrier_sid(carrier_sid)


def start_inbound(
    *, to_number: str, from_number: str, carrier_sid: str
) -> tuple[str, CallRecord] | None:
    """The inbound call's record (created once per CallSid), with its account; None when the
    number cannot take calls now (no holder, not active, no assistant, inbound disabled, no
    credits)."""
    known = store.by_carrier_sid(carrier_sid)
    if known is not None:
        record = store.get(*known)
        return (known[0], record) if record.status != "ended" else None
    held = numbers_store_holder(to_number)
    if held is None:
        return None
    account_id, number_id = held
    try:
        number = numbers.get_record(account_id, number_id)
    except NotFound:
        return None
    if number.status != "active" or not number.assistant_id:
        return None
    try:
        assistant = assistants.get_record(account_id, number.assistant_id)
    except NotFound:
        return None
    if not assistant.telephony.inbound_enabled:
        return None
    if credits.balance(account_id).balance <= Decimal(0):
        return None
    contact_id = None
    company_id = None
    try:
        caller = normalise_phone(from_number)
        contact_id = contact_store.find_by_phone(account_id, caller)
    except InvalidPhone:
        contact_id = None  # withheld or odd caller ids: no contact
    if contact_id:
        try:
            company_id = contact_store.get(account_id, contact_id).company_id
        except NotFound:
            contact_id = None
    record = CallRecord(
        id=new_id("call"),
        direction="inbound",
        status="ringing",
        assistant_id=assistant.id,
        phone_number_id=number.id,
        from_number=from_number,
        to_number=to_number,
        contact_id=contact_id,
        company_id=company_id,
        created_at=utcnow(),
        carrier_sid=carrier_sid,
        max_duration_seconds=assistant.telephony.max_call_duration_seconds,
    )
    try:
        store.create(account_id, record)
    except Conflict:
        known = store.by_carrier_sid(carrier_sid)
        if known is None:
            raise
        return known[0], store.get(*known)
    return account_id, record


def numbers_store_holder(phone_number: str) -> tuple[str, str] | None:
    from talkturo.store import numbers as number_store

    return number_store.holder(phone_number)


# --------------------------------------------------------------------------- timeouts


def close_timed_out(
    now: datetime | None = None, lookback_hours: int = CLOSER_LOOKBACK_HOURS
) -> list[str]:
    """End every open call past its deadline with ended_reason timeout; the ids closed.

    Reads the open-call index hour by hour (no scan). A call that fails to close stays in the
    index and is tried again on the next run."""
    now = now or utcnow()
    closed: list[str] = []
    for back in range(lookback_hours, -1, -1):
        hour = now - timedelta(hours=back)
        for account_id, call_id in list(store.open_calls(hour, now)):
            try:
                after = change(account_id, call_id, _closer(now))
            except NotFound:
                continue
            except Exception:  # noqa: BLE001 (one call's failure must not stop the sweep)
                logger.exception("call could not be closed", extra={"id": call_id})
                continue
            if after.ended_reason == "timeout":
                closed.append(call_id)
                if after.campaign_id:
                    _tell_campaign(account_id, after, final=True)
    return closed


def _closer(now: datetime) -> Callable[[CallRecord], CallRecord | None]:
    def close(record: CallRecord) -> CallRecord | None:
        if record.status == "ended" or record.deadline > now:
            return None
        return apply(record, timed_out(record, now))

    return close


# --------------------------------------------------------------------------- post-call

# How long a carrier-reported end waits before its post-call job runs (the voice session of
# the call, if any, finishes saving first and queues the job itself without delay).
POST_CALL_DELAY_SECONDS = 60


def queue_post_call(account_id: str, call_id: str, *, delay_seconds: int = 0) -> bool:
    """Queue the call's post-call job once; False when it already was (or cannot be yet)."""
    url = get_settings().post_call_queue_url
    if not url:
        logger.warning("no post-call queue configured", extra={"id": call_id})
        return False
    claim = utcnow().isoformat()
    try:
        if not store.claim_post_call(account_id, call_id, claim):
            return False
    except NotFound:
        return False
    try:
        queues.send(
            url,
            PostCallJob(account_id=account_id, call_id=call_id).model_dump(),
            delay_seconds=delay_seconds,
        )
    except (BotoCoreError, ClientError, RuntimeError):
        store.release_post_call(account_id, call_id, claim)
        raise
    return True


# --------------------------------------------------------------------------- transcript, recording

RECORDING_URL_SECONDS = 900


def transcript_key(account_id: str, call_id: str) -> str:
    return f"transcripts/{account_id}/{call_id}.json"


def recording_key(account_id: str, call_id: str) -> str:
    return f"recordings/{account_id}/{call_id}.wav"


def get_transcript_messages(account_id: str, call_id: str) -> list[TranscriptMessage]:
    from talkturo.store import files

    body = files.read(transcript_key(account_id, call_id))
    if body is None:
        return []
    return Transcript.model_validate_json(body).messages


def get_recording_wav(account_id: str, call_id: str) -> bytes | None:
    """The recording saved so far (a call continuing after a transfer came back), or None."""
    from talkturo.store import files

    return files.read(recording_key(account_id, call_id))


def get_transcript(account_id: str, call_id: str) -> Transcript:
    record = get_record(account_id, call_id)
    if not record.transcript_available:
        raise NotFound("this call has no transcript (it never connected, or is still live)")
    return Transcript(call_id=call_id, messages=get_transcript_messages(account_id, call_id))


def recording_link(account_id: str, call_id: str) -> RecordingLink:
    from talkturo.store import files

    record = get_record(account_id, call_id)
    if not record.recording_available or not record.recording_key:
        raise NotFound(
            "this call has no recording (recording disabled, never connected, or still live)"
        )
    url = files.presigned_url(
        record.recording_key, expires_seconds=RECORDING_URL_SECONDS, filename=f"{call_id}.wav"
    )
    return RecordingLink(
        call_id=call_id,
        url=url,
        expires_at=utcnow() + timedelta(seconds=RECORDING_URL_SECONDS),
    )


def save_conversation(
    account_id: str,
    call_id: str,
    *,
    messages: list[TranscriptMessage],
    recording_wav: bytes | None,
) -> None:
    """Write the transcript (and the recording) of the call so far; safe to repeat."""
    from talkturo.store import files

    files.put(
        transcript_key(account_id, call_id),
        Transcript(call_id=call_id, messages=messages).model_dump_json().encode(),
        "application/json",
    )
    if recording_wav is not None:
        files.put(recording_key(account_id, call_id), recording_wav, "audio/wav")


def close_session(
    account_id: str,
    call_id: str,
    *,
    stream_sid: str,
    charge: Decimal,
    billed_seconds: int,
    recorded: bool,
    bookings: list[Booking],
    end: CallEvent | None,
) -> CallRecord:
    """A voice session is over: its charge and the connected seconds it bills, what it saved,
    and the call's end when the session decided it (None: the call goes on, e.g. transferred)."""

    def update(record: CallRecord) -> CallRecord | None:
        charges = {**record.session_charges, stream_sid: charge}
        seconds = {**record.session_seconds, stream_sid: billed_seconds}
        known = {b.id for b in record.bookings}
        connected = sum(seconds.values())
        changes: dict[str, object] = {
            "session_charges": charges,
            "credits_charged": sum(charges.values(), Decimal(0)),
            "session_seconds": seconds,
            # A test call's seconds are test minutes, not billed ones (it drew no credits).
            "billed_seconds": 0 if record.is_test else connected,
            "test_seconds": connected if record.is_test else 0,
            "transcript_available": True,
            "settled_by": "voice_session",
            "bookings": [*record.bookings, *(b for b in bookings if b.id not in known)],
        }
        if recorded:
            changes.update(
                recording_available=True, recording_key=recording_key(account_id, call_id)
            )
        changed = record.model_copy(update=changes)
        if end is not None:
            changed = apply(changed, end) or changed
        return changed

    after = change(account_id, call_id, update)
    if after.status == "ended" and not after.is_test:  # a test call's caller reads it at once
        queue_post_call(account_id, call_id)
    return after


def record_session_end(account_id: str, call_id: str, event: CallEvent) -> CallRecord:
    """The voice session ends the call (before it hangs up at the carrier, so the carrier's
    `completed` callback finds the reason already written). The post-call job is queued when
    the session has saved its work (close_session)."""
    return change(account_id, call_id, lambda r: apply(r, event))


def mark_connected(account_id: str, call_id: str) -> CallRecord | None:
    """The media stream is up: the call is in progress (inbound calls learn it only here), and
    a voice session meters it (the post-call job settles a session that never closed)."""
    event = CallEvent(at=utcnow(), status="in_progress")
    return record_event(account_id, call_id, event, session_started=True)


def mark_opted_out(account_id: str, call_id: str) -> CallRecord:
    """The caller asked on this call not to be called again (the campaign engine reads it)."""

    def mark(record: CallRecord) -> CallRecord | None:
        return None if record.opted_out else record.model_copy(update={"opted_out": True})

    return change(account_id, call_id, mark)
