"""Test calls: a simulated caller talks to the assistant's real voice session, no carrier.

`run_test_call` records a test call for the assistant (a CallRecord with `test_run_id` and
`scenario`, placeholder numbers, docs/voice.md "Test calls"), connects to the voice service's
`/media` WebSocket exactly as the carrier does (a signed token in the start message's
parameters, X-Twilio-Signature on the upgrade when the service checks one) and plays the
caller's script through `simcaller.media.MediaStream`. A `next_line` callback (a persona
caller) writes the lines of the script's `converse` steps from what the caller heard, made text
by the assistant's transcriber (simcaller.voice.transcribe); it is awaited on the call's loop.
The voice session runs as for a real call, with `TestCallServices`: no credits, transfers
simulated, no contact marked do-not-call.

Blocking, with its own event loop on its own thread: safe to call from an SQS worker thread (or
from code that has an event loop running). However the call goes, it returns; a voice service
that cannot be reached or a call that does not end within `timeout_seconds` is an observation
with `error` set, the record ended `error`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from talkturo import tokens
from talkturo.config import get_settings
from talkturo.domain.call_insights import CallMetrics, metrics_of
from talkturo.domain.calls import (
    TEST_ASSISTANT_NUMBER,
    TEST_CALLER_NUMBER,
    TEST_PHONE_NUMBER_ID,
    CallEvent,
    CallRecord,
    EndedReason,
    TranscriptMessage,
)
from talkturo.domain.common import utcnow
from talkturo.ids import new_id
from talkturo.logs import logger
from talkturo.services import assistants, calls
from talkturo.simcaller.media import MediaStream, NextLine, Outcome, PartyRecord, ScriptCursor
from talkturo.simcaller.scripts import Script
from talkturo.store import calls as call_store
from talkturo.store import contacts as contact_store

# After the caller's side is over, how long the voice session may take to save and close.
SAVE_GRACE_SECONDS = 30.0
# Beyond the call's own timeout, how long the whole run may take (connecting, saving).
RUN_MARGIN_SECONDS = SAVE_GRACE_SECONDS + 20.0
POLL_SECONDS = 0.1
# A stream the voice service closed without starting a session: how long to look for one.
REFUSED_SECONDS = 2.0


@dataclass
class TestCallObservation:
    """What a test call did, from both ends: the voice session's record and the caller's ear."""

    __test__ = False  # not a pytest test class, whatever its name

    call_id: str
    transcript: list[TranscriptMessage]  # as saved by the voice session
    ended_reason: str | None  # the call record's
    transferred_to: str | None
    duration_seconds: int
    billed_seconds: int  # test seconds (no credits drawn)
    turn_latencies_ms: list[int]  # caller's end of words -> assistant's reply start
    metrics: CallMetrics | None  # talkturo.domain.call_insights
    recording_available: bool
    caller: dict[str, Any]  # the caller's PartyRecord.as_dict()
    error: str | None  # why the call could not run, else None


def run_test_call(
    account_id: str,
    assistant_id: str,
    script: Script,
    *,
    test_run_id: str,
    scenario: str,
    direction: Literal["inbound", "outbound"] = "inbound",
    contact_id: str | None = None,
    timeout_seconds: float = 600,
    next_line: NextLine | None = None,
) -> TestCallObservation:
    """One test call of the assistant, driven by `script`; blocks until it is over.

    NotFound (param assistant_id or contact_id) when the assistant or the contact does not
    exist; every other failure is the observation's `error`."""
    record = create_test_call(
        account_id,
        assistant_id,
        test_run_id=test_run_id,
        scenario=scenario,
        direction=direction,
        contact_id=contact_id,
    )
    party = PartyRecord()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["error"] = asyncio.run(
                _converse(
                    account_id, record, script, party, limit=timeout_seconds, next_line=next_line
                )
            )
        except BaseException as error:  # noqa: BLE001 - reported as the observation's error
            logger.exception("test call broke", extra={"id": record.id})
            outcome["error"] = f"the test call broke: {error!r}"

    worker = threading.Thread(target=run, name=f"test-call-{record.id}", daemon=True)
    worker.start()
    worker.join(timeout_seconds + RUN_MARGIN_SECONDS)
    error: str | None = outcome.get("error") if not worker.is_alive() else "the test call hung"
    if error is not None:
        _end_with_error(account_id, record.id, error)
    return observe(account_id, record.id, party, error)


def create_test_call(
    account_id: str,
    assistant_id: str,
    *,
    test_run_id: str,
    scenario: str,
    direction: Literal["inbound", "outbound"] = "inbound",
    contact_id: str | None = None,
) -> CallRecord:
    """The test call's record, ringing: placeholder numbers, the contact's variables if any."""
    assistant = assistants.get_record(account_id, assistant_id)
    company_id = None
    if contact_id is not None:
        from talkturo.errors import NotFound

        try:
            company_id = contact_store.get(account_id, contact_id).company_id
        except NotFound:
            raise NotFound("no such contact", param="contact_id") from None
    caller, platform = TEST_CALLER_NUMBER, TEST_ASSISTANT_NUMBER
    record = CallRecord(
        id=new_id("call"),
        direction=direction,
        status="ringing",
        # An outbound test call is answered by a person: no answering-machine detection.
        answered_by="human" if direction == "outbound" else None,
        assistant_id=assistant.id,
        phone_number_id=TEST_PHONE_NUMBER_ID,
        from_number=caller if direction == "inbound" else platform,
        to_number=platform if direction == "inbound" else caller,
        contact_id=contact_id,
        company_id=company_id,
        created_at=utcnow(),
        max_duration_seconds=assistant.telephony.max_call_duration_seconds,
        test_run_id=test_run_id,
        scenario=scenario,
    )
    call_store.create(account_id, record)
    return record


def _stream_headers(url: str) -> dict[str, str]:
    """X-Twilio-Signature over the stream's URL, when the voice service checks one."""
    from talkturo.carrier.base import CarrierNotConfigured
    from talkturo.carrier.factory import webhook_auth_token

    try:
        auth_token = webhook_auth_token()
    except CarrierNotConfigured:
        return {}
    if not auth_token:
        return {}
    from twilio.request_validator import RequestValidator

    return {"X-Twilio-Signature": RequestValidator(auth_token).compute_signature(url, {})}


async def _converse(
    account_id: str,
    record: CallRecord,
    script: Script,
    party: PartyRecord,
    *,
    limit: float,
    next_line: NextLine | None = None,
) -> str | None:
    """The caller's side of the call, then the wait for the session to save; the error."""
    from talkturo.provider_keys import provider_env
    from talkturo.simcaller import voice as caller
    from talkturo.voice.providers.base import ProviderError
    from talkturo.webhooks.carrier import voice_token_secret

    url = get_settings().voice_stream_url
    claims = {"call": record.id, "account": account_id, "assistant": record.assistant_id}
    token = tokens.sign(claims, voice_token_secret())
    voice = None
    ear = None
    broke: list[str] = []  # why the caller's ear or its next line failed: the call's error
    if script.tts is None or next_line is not None:
        assistant = await asyncio.to_thread(assistants.get_record, account_id, record.assistant_id)
    if script.tts is None:
        try:
            voice = caller.caller_voice(assistant, provider_env())  # the voice service's keys
        except ProviderError as error:
            return f"the caller's voice is not available: {error}"
    if next_line is not None:
        try:
            transcriber, options = caller.caller_ear(assistant, provider_env())
        except ProviderError as error:
            return f"the caller's transcriber is not available: {error}"

        async def ear(heard: bytes) -> str:
            try:
                return await caller.transcribe(transcriber, options, heard)
            except ProviderError as error:
                broke.append(f"the caller's transcriber failed: {error}")
                return ""

        write = next_line

        async def next_line(heard: str) -> str | None:
            if broke:
                return None  # hang up: the turn cannot be written
            try:
                return await write(heard)
            except Exception as error:  # noqa: BLE001 - the call's error, the caller hangs up
                broke.append(f"the persona caller's next line failed: {error}")
                return None

    ended = asyncio.Event()
    stream = MediaStream(
        url=url,
        parameters={"token": token},
        account_sid="test",
        call_sid="",  # no carrier call
        cursor=ScriptCursor(script, voice=voice, next_line=next_line, ear=ear),
        record=party,
        ended=ended,
        headers=_stream_headers(url),
    )
    running = asyncio.create_task(stream.run())
    timed_out = False
    try:
        # The caller's own limit (max_seconds) hangs up; the run's timeout is an error.
        done, _ = await asyncio.wait({running}, timeout=min(script.max_seconds, limit))
        if not done:
            timed_out = script.max_seconds >= limit
            if timed_out:  # written before the stream stops: the session's end cannot win
                await asyncio.to_thread(
                    _end_with_error,
                    account_id,
                    record.id,
                    f"the test call did not end within {limit:g} s",
                )
            ended.set()
        outcome: Outcome = await running
    finally:
        if voice is not None:
            await voice.close()
    log = party.streams[-1] if party.streams else {}
    if outcome == "connect_failed":
        return f"the voice service could not be reached at {url}: {log.get('error')}"
    saved = await asyncio.to_thread(_wait_for_close, account_id, record.id)
    if timed_out:
        return f"the test call did not end within {limit:g} s"
    if broke:
        return broke[0]
    if not saved:
        reason = (log.get("close") or {}).get("reason") or "no reason given"
        return f"the voice service did not take the call or did not close it ({reason})"
    return None


def _wait_for_close(account_id: str, call_id: str) -> bool:
    """Whether the voice session closed the call (ended, transcript saved) within the grace;
    False soon when no session ever took the stream (refused: a bad token, no such call)."""
    now = time.monotonic()
    deadline, refused_after = now + SAVE_GRACE_SECONDS, now + REFUSED_SECONDS
    while True:
        record = call_store.get(account_id, call_id)
        if record.status == "ended" and record.transcript_available:
            return True
        now = time.monotonic()
        if now >= deadline or (not record.voice_session_started and now >= refused_after):
            return False
        time.sleep(POLL_SECONDS)


def _end_with_error(account_id: str, call_id: str, why: str) -> None:
    """The record ended `error` (once: a record already ended keeps its end)."""
    record = call_store.get(account_id, call_id)
    now = utcnow()
    reason: EndedReason = "error"
    event = CallEvent(
        at=now,
        status="ended",
        outcome="answered" if record.answered_at else "failed",
        ended_reason=reason,
        duration_seconds=int((now - record.answered_at).total_seconds())
        if record.answered_at
        else 0,
        error_message=why[:500],
    )
    try:
        calls.record_session_end(account_id, call_id, event)
    except Exception:  # noqa: BLE001 - the observation still says why
        logger.exception("the test call's end could not be written", extra={"id": call_id})


def turn_latencies(party: PartyRecord) -> list[int]:
    """Per line the caller said: from the end of its words to the next start of the assistant's
    audio the caller heard (before the caller's next line), in ms."""
    latencies: list[int] = []
    said = party.said
    for index, line in enumerate(said):
        end = float(line["at"]) + float(line["seconds"])
        until = float(said[index + 1]["at"]) if index + 1 < len(said) else float("inf")
        onset = next((t for t in party.heard_onsets if end <= t < until), None)
        if onset is not None:
            latencies.append(round((onset - end) * 1000))
    return latencies


def observe(
    account_id: str, call_id: str, party: PartyRecord, error: str | None
) -> TestCallObservation:
    """The observation of a test call that is over: its record, transcript, timing."""
    from talkturo.services import post_call

    record = call_store.get(account_id, call_id)
    transcript: list[TranscriptMessage] = []
    metrics: CallMetrics | None = None
    if record.transcript_available:
        transcript = calls.get_transcript_messages(account_id, call_id)
        metrics = metrics_of(transcript)
        try:  # on the record as for a real call (test calls get no post-call job)
            record = post_call.write_insights(account_id, record)
        except Exception:  # noqa: BLE001 - the observation has them anyway
            logger.exception("the test call's metrics could not be written", extra={"id": call_id})
    if error is None and record.ended_reason == "error" and record.answered_at is None:
        error = record.error_message or "the call could not start"  # refused by the service
    return TestCallObservation(
        call_id=call_id,
        transcript=transcript,
        ended_reason=record.ended_reason,
        transferred_to=record.transferred_to,
        duration_seconds=int(record.duration_seconds or 0),
        billed_seconds=record.test_seconds,
        turn_latencies_ms=turn_latencies(party),
        metrics=metrics,
        recording_available=record.recording_available,
        caller=party.as_dict(),
        error=error,
    )
