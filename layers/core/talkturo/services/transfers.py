"""Call transfers: hand a live call to a person, cold or warm.

The voice service calls `start_cold` or `start_warm` during a call (the assistant's
`transfer_call` tool), then ends its media stream. What happens next the carrier reports on the
webhooks (talkturo.webhooks.carrier), which call `dial_ended` and `leg_status` here.

Cold: the caller's call is redirected to a <Dial> of the destination, with the platform's
number as caller ID. When the dialed leg ends the carrier requests the <Dial> action
(/carrier/transfer): answered and over (`completed`) → the call hangs up and ends
`transferred`; busy, no answer, failed or canceled → the caller goes back to the voice service
(a new <Connect><Stream> whose token says `"resume": "transfer_failed"`).

Warm: the supervisor is called first (an outbound call whose inline TwiML says the brief, then
joins the conference `talkturo-{call id}`, starting it), then the caller is redirected into that
conference, where they wait (ringback, or silence) until the supervisor joins. The supervisor
leg's status callback (/carrier/transfer-leg) reports a failure (busy, no answer …); the caller
is then sent back to the voice service. Whoever learns of a failure second sends the caller back
(the call record's `transfer_held`, written under the store's conditional writes, says whether
the caller already waits in the conference), so the caller is sent back exactly once.
"""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from twilio.twiml.voice_response import Dial, VoiceResponse

from talkturo.carrier.base import CarrierError
from talkturo.config import get_settings
from talkturo.domain.calls import (
    TRANSFER_FINAL,
    TWILIO_TRANSFER_STATUS,
    CallRecord,
    TransferMode,
    TransferStatus,
    transfer_moved,
    transfer_started,
)
from talkturo.domain.dialing import Destination
from talkturo.domain.telephony import CallRequest
from talkturo.errors import InvalidRequest
from talkturo.logs import logger
from talkturo.services import dialing
from talkturo.services.calls import carrier_of
from talkturo.store import calls as store

if TYPE_CHECKING:
    from talkturo.carrier.base import Carrier
    from talkturo.domain.assistant_tools import TransferDestination

DIAL_TIMEOUT_SECONDS = 20
# Twilio refuses inline TwiML longer than this (error 32018).
MAX_INLINE_TWIML_CHARS = 4000
# <Dial ringTone> values Twilio accepts (country codes; `uk` for Great Britain).
# fmt: off
RING_TONES = frozenset({
    "at", "au", "bg", "br", "be", "ch", "cl", "cn", "cz", "de", "dk", "ee", "es", "fi", "fr",
    "gr", "hu", "il", "in", "it", "lt", "jp", "mx", "my", "nl", "no", "nz", "ph", "pl", "pt",
    "ru", "se", "sg", "th", "uk", "us", "tw", "ve", "za"
})
# fmt: on
# Regions whose ringback is another region's (the North American plan rings like the US).
RING_TONE_OF_REGION = {"GB": "uk", "CA": "us", "PR": "us", "VI": "us", "GU": "us"}
DIAL_FAILURES = frozenset({"busy", "no-answer", "failed", "canceled"})
TRANSFER_FAILED = TRANSFER_FINAL - {"completed"}

# The ringback the caller hears while a warm transfer rings: US cadence, 440 + 480 Hz, 2 s on,
# 4 s off (one cycle; <Play loop="0"> repeats it).
RINGBACK_HZ = (440.0, 480.0)
RINGBACK_ON_SECONDS = 2.0
RINGBACK_OFF_SECONDS = 4.0
RINGBACK_RATE = 8000
RINGBACK_AMPLITUDE = 0.2  # of full scale, per tone


class TransferError(CarrierError):
    """The transfer cannot start (the call is not live at the carrier)."""

    status = 409
    code = "transfer_not_possible"


# --------------------------------------------------------------------------- TwiML


def conference_name(call_id: str) -> str:
    return f"talkturo-{call_id}"


def platform_number(call: CallRecord) -> str:
    """The platform's own number on the call: the caller ID of anything dialed from it."""
    return call.from_number if call.direction == "outbound" else call.to_number


def ring_tone_for(number: str) -> str | None:
    """Twilio's ringTone for the destination's country; None when Twilio has none for it."""
    import phonenumbers

    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return None
    if not region:
        return None
    tone = RING_TONE_OF_REGION.get(region, region.lower())
    return tone if tone in RING_TONES else None


def webhook_url(
    kind: str, account_id: str | None = None, call_id: str | None = None, **extra: str
) -> str:
    base = get_settings().public_base_url.rstrip("/")
    query = {"call": call_id, "account": account_id, **extra} if call_id and account_id else extra
    return f"{base}/carrier/{kind}" + (f"?{urlencode(query)}" if query else "")


def cold_twiml(
    account_id: str,
    call: CallRecord,
    destination: TransferDestination,
    *,
    ring_tone: bool,
    send_digits: str | None = None,
) -> str:
    response = VoiceResponse()
    dial = Dial(
        action=webhook_url("transfer", account_id, call.id),
        method="POST",
        timeout=DIAL_TIMEOUT_SECONDS,
        caller_id=platform_number(call),
        answer_on_bridge=True,
        ring_tone=ring_tone_for(destination.number) if ring_tone else None,
    )
    dial.number(destination.number, send_digits=send_digits)
    response.append(dial)
    return str(response)


def warm_caller_twiml(account_id: str, call: CallRecord, *, ring_tone: bool) -> str:
    """The caller waits in the conference (ringback or silence) until the supervisor joins;
    when either leaves, the conference ends."""
    response = VoiceResponse()
    dial = Dial(action=webhook_url("transfer", account_id, call.id, mode="warm"), method="POST")
    dial.conference(
        conference_name(call.id),
        wait_url=webhook_url("wait") if ring_tone else "",  # "": silence, not hold music
        start_conference_on_enter=False,
        end_conference_on_exit=True,
        beep=False,
    )
    response.append(dial)
    return str(response)


def supervisor_twiml(call: CallRecord, brief: str) -> str:
    """The supervisor hears the brief, then joins (and starts) the caller's conference."""

    def build(text: str) -> str:
        response = VoiceResponse()
        if text:
            response.say(text)
        dial = Dial()
        dial.conference(
            conference_name(call.id),
            start_conference_on_enter=True,
            end_conference_on_exit=True,
            beep=False,
        )
        response.append(dial)
        return str(response)

    text = " ".join(brief.split())
    twiml = build(text)
    while len(twiml) > MAX_INLINE_TWIML_CHARS and text:
        # Escaping can make the document longer than the text: cut the text and measure again.
        text = text[: max(0, len(text) - (len(twiml) - MAX_INLINE_TWIML_CHARS) - 1)].rstrip()
        twiml = build(text)
    return twiml


def wait_twiml() -> str:
    """The conference's waitUrl answer: ringback, looped until the conference starts."""
    response = VoiceResponse()
    response.play(webhook_url("ringback.wav"), loop=0)
    return str(response)


def hangup_twiml() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


@lru_cache(maxsize=1)
def ringback_wav() -> bytes:
    """One ringback cycle as a WAV file (8 kHz, 16-bit, mono), built once per process."""
    on = round(RINGBACK_ON_SECONDS * RINGBACK_RATE)
    off = round(RINGBACK_OFF_SECONDS * RINGBACK_RATE)
    peak = RINGBACK_AMPLITUDE * 32767
    samples = array(
        "h",
        (
            round(sum(peak * math.sin(2 * math.pi * hz * i / RINGBACK_RATE) for hz in RINGBACK_HZ))
            for i in range(on)
        ),
    )
    samples.extend([0] * off)
    if sys.byteorder == "big":
        samples.byteswap()  # WAV samples are little-endian
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RINGBACK_RATE)
        wav.writeframes(samples.tobytes())
    return buffer.getvalue()


# --------------------------------------------------------------------------- starting


def _checked(
    account_id: str, call: CallRecord, destination: TransferDestination
) -> tuple[TransferDestination, Destination]:
    """The destination as the dialing rules let it be dialled, now (the account's numbers and
    settings may have changed since the tool was saved). Refused: InvalidRequest, and the
    caller stays with the voice service, which tells them."""
    try:
        checked = dialing.check(
            account_id, destination.number, caller_id=platform_number(call), param="number"
        )
    except InvalidRequest as refusal:
        logger.warning("transfer destination refused", extra={"id": call.id, "code": refusal.code})
        raise
    return destination.model_copy(update={"number": checked.number}), checked


def _live_sid(call: CallRecord) -> str:
    if call.status == "ended" or not call.carrier_sid:
        raise TransferError("the call is not live at the carrier; it cannot be transferred")
    return call.carrier_sid


def _begin(account_id: str, call_id: str, name: str, mode: TransferMode) -> CallRecord:
    def begin(record: CallRecord) -> CallRecord:
        if record.status == "ended":
            raise TransferError("the call has ended; it cannot be transferred")
        return transfer_started(record, to=name, mode=mode)

    return store.change(account_id, call_id, begin)


def _move(account_id: str, call_id: str, status: TransferStatus) -> CallRecord:
    return store.change(account_id, call_id, lambda r: transfer_moved(r, status))


def start_cold(
    account_id: str,
    call: CallRecord,
    destination: TransferDestination,
    *,
    ring_tone: bool,
    carrier: Carrier | None = None,
) -> None:
    """Put the caller through to `destination` and leave the call (the media stream ends).

    Raises InvalidRequest when the dialing rules refuse the destination, CarrierError when the
    carrier refuses the redirect (either way the call goes on as it was)."""
    sid = _live_sid(call)
    destination, checked = _checked(account_id, call, destination)
    _begin(account_id, call.id, destination.name, "cold")
    twiml = cold_twiml(
        account_id, call, destination, ring_tone=ring_tone, send_digits=checked.send_digits
    )
    try:
        carrier_of(carrier).redirect_call(sid, twiml)
    except CarrierError:
        _move(account_id, call.id, "failed")
        raise
    logger.info("cold transfer started", extra={"id": call.id})


def start_warm(
    account_id: str,
    call: CallRecord,
    destination: TransferDestination,
    *,
    brief: str,
    ring_tone: bool,
    carrier: Carrier | None = None,
) -> None:
    """Call the supervisor (they hear `brief`, then join the conference) and move the caller
    into the conference to wait for them.

    The supervisor is called first: if the carrier refuses that call, the caller is still with
    the voice service, which tells them and goes on (CarrierError is raised)."""
    sid = _live_sid(call)
    destination, checked = _checked(account_id, call, destination)
    on_carrier = carrier_of(carrier)
    _begin(account_id, call.id, destination.name, "warm")
    request = CallRequest(
        to=destination.number,
        send_digits=checked.send_digits,
        from_=platform_number(call),
        twiml=supervisor_twiml(call, brief),
        status_callback_url=webhook_url("transfer-leg", account_id, call.id),
        machine_detection=False,
        timeout_seconds=DIAL_TIMEOUT_SECONDS,
    )
    try:
        leg = on_carrier.place_call(request)
    except CarrierError:
        _move(account_id, call.id, "failed")
        raise
    record = store.change(
        account_id,
        call.id,
        lambda r: (
            r.model_copy(update={"transfer_leg_sid": leg.carrier_sid})
            if r.transfer_leg_sid is None
            else None
        ),
    )
    if record.transfer_status in TRANSFER_FINAL:
        # The supervisor leg failed already (busy …): the caller never left the voice service.
        raise CarrierError(
            f"the transfer to {destination.name} failed ({record.transfer_status})",
            retryable=False,
        )
    try:
        on_carrier.redirect_call(sid, warm_caller_twiml(account_id, call, ring_tone=ring_tone))
    except CarrierError:
        _hang_up(on_carrier, leg.carrier_sid)
        _move(account_id, call.id, "failed")
        raise
    held = store.change(
        account_id,
        call.id,
        lambda r: None if r.transfer_held else r.model_copy(update={"transfer_held": True}),
    )
    if held.transfer_status in TRANSFER_FAILED:
        # The leg failed while the caller was being moved; its callback left the caller to us.
        resume(account_id, held, _twilio_status(held.transfer_status), carrier=on_carrier)
        return
    logger.info("warm transfer started", extra={"id": call.id})


# --------------------------------------------------------------------------- the carrier's reports


def _twilio_status(status: TransferStatus | None) -> str:
    return {"no_answer": "no-answer"}.get(status or "failed", status or "failed")


def _hang_up(carrier: Carrier, sid: str | None) -> None:
    if not sid:
        return
    try:
        carrier.hang_up(sid)
    except CarrierError as error:
        logger.warning(
            "the supervisor leg could not be hung up", extra={"code": error.carrier_code}
        )


def resume_twiml(account_id: str, record: CallRecord, dial_status: str) -> str:
    """Back to the voice service: a new stream whose token says the transfer failed."""
    from talkturo.webhooks.carrier import stream_twiml

    return stream_twiml(
        account_id,
        record,
        resume="transfer_failed",
        transfer_status=dial_status,
        transfer_to=record.transferred_to or "",
    )


def resume(
    account_id: str, record: CallRecord, dial_status: str, *, carrier: Carrier | None = None
) -> None:
    """Redirect the caller's live call back to the voice service (the transfer failed)."""
    if record.status == "ended" or not record.carrier_sid:
        return
    try:
        carrier_of(carrier).redirect_call(
            record.carrier_sid, resume_twiml(account_id, record, dial_status)
        )
    except CarrierError as error:
        # The caller hung up meanwhile (21220), or the carrier is down: nothing more to do.
        logger.warning(
            "the caller could not be sent back after a failed transfer",
            extra={"id": record.id, "code": error.carrier_code},
        )


def dial_ended(
    account_id: str,
    call_id: str,
    dial_status: str,
    *,
    mode: TransferMode,
    carrier: Carrier | None = None,
) -> str:
    """The <Dial> action of a transfer: the TwiML the caller's call goes on with.

    Answered and over (`completed`, or `answered` for a conference) → hang up: the call ends
    `transferred`. A failure → back to the voice service with the resume claims. A warm
    caller who left the conference before the supervisor answered (they hung up while waiting)
    cancels the transfer and its supervisor leg."""
    from talkturo.errors import NotFound

    try:
        record = store.get(account_id, call_id)
    except NotFound:
        return hangup_twiml()
    if dial_status in ("completed", "answered"):
        if mode == "warm" and record.transfer_status == "dialing":
            record = _move(account_id, call_id, "canceled")
            _hang_up(carrier_of(carrier), record.transfer_leg_sid)
        else:
            record = _move(account_id, call_id, "completed")
        return hangup_twiml()
    status = dial_status if dial_status in DIAL_FAILURES else "failed"
    record = _move(account_id, call_id, TWILIO_TRANSFER_STATUS[status])
    if mode == "warm":
        _hang_up(carrier_of(carrier), record.transfer_leg_sid)
    if record.status == "ended":
        return hangup_twiml()
    return resume_twiml(account_id, record, status)


def leg_status(
    account_id: str,
    call_id: str,
    *,
    leg_sid: str,
    call_status: str,
    carrier: Carrier | None = None,
) -> None:
    """The supervisor leg's status callback.

    Answered: the transfer is `answered` (or, when the caller is gone, the supervisor is hung
    up on). Busy, no answer, failed, canceled before the bridge: the transfer failed, and the
    caller goes back to the voice service if they already wait in the conference (otherwise
    start_warm, still running, does it). Anything else (ringing, completed): nothing."""
    from talkturo.errors import NotFound

    def ours(record: CallRecord) -> bool:
        return record.transfer_mode == "warm" and record.transfer_leg_sid in (None, leg_sid)

    try:
        if call_status == "in-progress":
            record = store.change(
                account_id,
                call_id,
                lambda r: transfer_moved(r, "answered") if ours(r) else None,
            )
            gone = record.status == "ended" or record.transfer_status in TRANSFER_FAILED
            if ours(record) and gone:
                _hang_up(carrier_of(carrier), leg_sid)  # nobody is left to bridge with
            return
        if call_status not in DIAL_FAILURES:
            return
        failed = TWILIO_TRANSFER_STATUS[call_status]
        sends_back = {"value": False}

        def fail(record: CallRecord) -> CallRecord | None:
            moved = transfer_moved(record, failed) if ours(record) else None
            sends_back["value"] = moved is not None and record.transfer_held
            return moved

        record = store.change(account_id, call_id, fail)
    except NotFound:
        return
    if sends_back["value"]:
        resume(account_id, record, call_status, carrier=carrier)
