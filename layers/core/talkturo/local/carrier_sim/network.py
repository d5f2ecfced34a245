"""The simulated phone network behind the carrier simulator: numbers, callees and calls.

All state lives on the simulator's event loop and is only touched from it (REST handlers are
coroutines on that loop, and so are the tasks that drive calls), so it needs no locks.

An outbound call is driven like Twilio drives one: status callbacks in Twilio's order with
Twilio's parameter names, the call's Url fetched (POST) when it is answered and its TwiML run
(the callee's script drives the simulated person on a <Connect><Stream>; a voicemail callee plays
its greeting and a beep), the asynchronous answering-machine result sent to
AsyncAmdStatusCallback, and every request signed with X-Twilio-Signature exactly as Twilio signs
(the SDK's own RequestValidator.compute_signature).

An inbound call sends its number's StatusCallback only the final status (`completed`, or
`failed`/`busy`), as Twilio does for calls to a phone number; the voice URL request itself
carries CallStatus=ringing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal

import httpx
from twilio.request_validator import RequestValidator

from talkturo.local.carrier_sim import audio
from talkturo.local.carrier_sim import twiml as tw
from talkturo.local.carrier_sim.audio import Engine
from talkturo.local.carrier_sim.inventory import OfferedNumber, build_inventory
from talkturo.local.carrier_sim.media import PartyRecord, ScriptCursor, run_stream
from talkturo.local.carrier_sim.scripts import (
    DEFAULT_CALLEE,
    DEFAULT_CALLER,
    DEFAULT_GREETING,
    Script,
)

logger = logging.getLogger("local.carrier_sim")

API_VERSION = "2010-04-01"
Behaviour = Literal["human", "no_answer", "busy", "failed", "voicemail"]
BEHAVIOURS: tuple[str, ...] = ("human", "no_answer", "busy", "failed", "voicemail")
FINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
CALLBACK_TIMEOUT_SECONDS = 10.0
USER_AGENT = "TwilioProxy/1.1"
HTTP_RETRIEVAL_FAILURE = 11200
MAX_REDIRECTS = 20
SAY_SECONDS_PER_WORD = 0.35  # how long a <Say> takes to speak, in simulated seconds
DEFAULT_TALK_SECONDS = 20.0  # how long a callee without a script stays on the line
GREETING_GAP_SECONDS = 0.3  # between a voicemail greeting and its beep
BEEP_END_SECONDS = 0.1  # the silence after the beep that AMD needs to call the message ended


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment, usegmt=False) if moment is not None else None


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Callee:
    """How a simulated number behaves when it is called (times in simulated seconds)."""

    behaviour: Behaviour = "human"
    ring_seconds: float = 2.0
    talk_seconds: float | None = None  # None: the script's max_seconds (20 s without a script)
    amd_seconds: float = 1.5
    script: Script | None = None

    @property
    def limit(self) -> float:
        """How long the callee stays on the line after answering, at most (simulated s)."""
        if self.talk_seconds is not None:
            return self.talk_seconds
        return self.script.max_seconds if self.script is not None else DEFAULT_TALK_SECONDS

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "behaviour": self.behaviour,
            "ring_seconds": self.ring_seconds,
            "talk_seconds": self.limit,
            "amd_seconds": self.amd_seconds,
        }
        if self.script is not None:
            result["script"] = self.script.as_dict()
        return result


@dataclass
class SimCall:
    sid: str
    account_sid: str
    to: str
    from_: str
    url: str | None
    method: str
    twiml: str | None
    status_callback: str | None
    status_callback_method: str
    status_callback_events: set[str]
    timeout: int
    machine_detection: str | None
    async_amd: bool
    async_amd_callback: str | None
    async_amd_callback_method: str
    phone_number_sid: str | None
    date_created: datetime = field(default_factory=now)
    date_updated: datetime = field(default_factory=now)
    status: str = "queued"
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None
    answered_by: str | None = None
    sequence: int = 0
    # What happened, for tests and the control API.
    events: list[dict[str, Any]] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)  # TwiML the call executed, in order
    hangup: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    direction: str = "outbound-api"
    script: Script | None = None  # inbound: the caller's script
    record: PartyRecord = field(default_factory=PartyRecord)  # what the simulated party heard
    # An answering machine's greeting and beep (mu-law), played from the moment it answers.
    machine_audio: bytes = b""
    error_code: int | None = None
    error_message: str | None = None
    voice_fallback_url: str | None = None
    voice_fallback_method: str = "POST"
    # A redirect from the REST API waiting to replace what the call runs.
    pending_redirect: tuple[str | None, str | None, str] | None = None
    program: asyncio.Task[Any] | None = None
    final_sent: bool = False
    _answered_at: float | None = None


class Network:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        time_scale: float = 1.0,
        seed: int = 2010,
        tts: Engine = "auto",
    ) -> None:
        self.account_sid = account_sid
        self.time_scale = time_scale
        self.tts: Engine = tts
        self._validator = RequestValidator(auth_token)
        self.available: dict[str, OfferedNumber] = {
            n.phone_number: n for n in build_inventory(seed)
        }
        self.numbers: dict[str, dict[str, Any]] = {}  # IncomingPhoneNumber resources by sid
        self.calls: dict[str, SimCall] = {}
        self.callees: dict[str, Callee] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=CALLBACK_TIMEOUT_SECONDS,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._http

    # ------------------------------------------------------------------------------ signing
    def signature(self, url: str, params: dict[str, str]) -> str:
        """X-Twilio-Signature for a request to `url` with these POST parameters."""
        return str(self._validator.compute_signature(url, params))

    async def send(self, url: str, params: dict[str, str], method: str = "POST") -> httpx.Response:
        """A signed request to the platform, as Twilio sends webhooks."""
        client = self._client()
        if method.upper() == "GET":
            full = str(httpx.URL(url).copy_merge_params(params))
            headers = {"X-Twilio-Signature": self.signature(full, {})}
            return await client.get(full, headers=headers)
        headers = {
            "X-Twilio-Signature": self.signature(url, params),
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        }
        return await client.post(url, data=params, headers=headers)

    # ------------------------------------------------------------------------------ calls
    def start(self, call: SimCall) -> None:
        self.calls[call.sid] = call
        task = asyncio.get_running_loop().create_task(self._drive(call), name=call.sid)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def callee(self, number: str) -> Callee:
        return self.callees.get(number) or Callee()

    async def _pause(self, call: SimCall, seconds: float) -> bool:
        """Wait `seconds` (simulated); True when the platform hung up meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.hangup.wait(), timeout=max(0.0, seconds) * self.time_scale)
        return call.hangup.is_set()

    def _call_params(self, call: SimCall) -> dict[str, str]:
        return {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": call.direction,
            "From": call.from_,
            "To": call.to,
        }

    async def _status(self, call: SimCall, event: str, call_status: str) -> None:
        """One status callback, if the platform asked for this event ("completed" always)."""
        if not call.status_callback:
            return
        if event != "completed" and event not in call.status_callback_events:
            return
        params = self._call_params(call)
        params.update(
            {
                "CallStatus": call_status,
                "CallbackSource": "call-progress-events",
                "SequenceNumber": str(call.sequence),
                "Timestamp": rfc2822(now()) or "",
            }
        )
        if event == "completed" and call.duration is not None:
            params["CallDuration"] = str(call.duration)
            params["Duration"] = str(math.ceil(call.duration / 60)) if call.duration else "0"
        if call.answered_by:
            params["AnsweredBy"] = call.answered_by
        if event == "completed" and call.error_code is not None:
            params["ErrorCode"] = str(call.error_code)
            params["ErrorMessage"] = call.error_message or ""
        call.sequence += 1
        await self._deliver(
            call, "status", call.status_callback, params, call.status_callback_method
        )

    async def _deliver(
        self, call: SimCall, kind: str, url: str, params: dict[str, str], method: str
    ) -> httpx.Response | None:
        record: dict[str, Any] = {
            "kind": kind,
            "url": url,
            "params": params,
            "response_status": None,
        }
        call.events.append(record)
        try:
            response = await self.send(url, params, method)
        except httpx.HTTPError as exc:
            logger.warning("%s callback for %s to %s failed: %s", kind, call.sid, url, exc)
            record["response_status"] = None
            return None
        record["response_status"] = response.status_code
        if response.status_code >= 400:
            logger.warning(
                "%s callback for %s answered %s by %s", kind, call.sid, response.status_code, url
            )
        return response

    def _set(self, call: SimCall, status: str) -> None:
        call.status = status
        call.date_updated = now()

    def _finish(self, call: SimCall, status: str) -> None:
        self._set(call, status)
        call.end_time = now()
        if call._answered_at is not None:
            elapsed = (time.monotonic() - call._answered_at) / (self.time_scale or 1.0)
            call.duration = max(1, round(elapsed))
        else:
            call.duration = 0

    async def _drive(self, call: SimCall) -> None:
        try:
            await self._run(call)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the simulated call %s broke", call.sid)
            if call.status not in FINAL_STATUSES:
                self._finish(call, "failed")
        finally:
            call.done.set()

    async def _run(self, call: SimCall) -> None:
        callee = self.callee(call.to)
        # Dialing starts: Twilio reports "initiated" (the call leaves the queue).
        await self._status(call, "initiated", "initiated")
        if await self._pause(call, 0.1):
            return await self._end(call, "canceled")
        if callee.behaviour == "failed":
            return await self._end(call, "failed")
        if callee.behaviour == "busy":
            if await self._pause(call, min(callee.ring_seconds, 1.0)):
                return await self._end(call, "canceled")
            return await self._end(call, "busy")
        self._set(call, "ringing")
        await self._status(call, "ringing", "ringing")
        if callee.behaviour == "no_answer":
            if await self._pause(call, call.timeout):
                return await self._end(call, "canceled")
            return await self._end(call, "no-answer")
        script = callee.script or DEFAULT_CALLEE
        if callee.behaviour == "voicemail":
            # A machine answers: it plays its greeting, then a beep, then listens (records).
            script = script.model_copy(update={"steps": []})
        cursor = ScriptCursor(script, self.tts)
        greeting = None
        if callee.behaviour == "voicemail":
            greeting = await cursor.speech(script.greeting or DEFAULT_GREETING)  # while ringing
        if await self._pause(call, min(callee.ring_seconds, call.timeout)):
            return await self._end(call, "canceled")
        # Answered (by a person or by a voicemail box).
        self._set(call, "in-progress")
        call.start_time = now()
        call._answered_at = time.monotonic()
        if greeting is not None:
            gap = audio.silence(GREETING_GAP_SECONDS)
            call.machine_audio = greeting.audio + gap + audio.beep()
            beep_at = (len(greeting.audio) + len(gap)) / audio.SAMPLE_RATE
            call.record.said.append(
                {
                    "text": script.greeting or DEFAULT_GREETING,
                    "engine": greeting.engine,
                    "seconds": round(greeting.seconds, 3),
                    "at": 0.0,
                    "greeting": True,
                }
            )
            call.record.said.append({"beep": True, "hz": 1000, "seconds": 0.5, "at": beep_at})
        await self._status(call, "answered", "in-progress")
        amd: asyncio.Task[None] | None = None
        if call.machine_detection:
            amd = asyncio.create_task(self._detect(call, callee), name=f"{call.sid}-amd")
        try:
            async with asyncio.timeout(None) as limit:
                await self._run_documents(
                    call, cursor, call.twiml, call.url, call.method, limit, callee.limit
                )
        except TimeoutError:
            call.record.heard.append({"kind": "callee_hung_up", "reason": "max_seconds"})
        finally:
            if amd is not None:
                if call.answered_by is None:
                    amd.cancel()  # the call ended before the detection finished
                with contextlib.suppress(BaseException):
                    await amd
        return await self._end(call, "completed")

    def _amd_seconds(self, call: SimCall, callee: Callee) -> float:
        """When the detection decides, in simulated seconds after the answer."""
        detect_end = (call.machine_detection or "").lower() == "detectmessageend"
        if callee.behaviour == "voicemail" and detect_end and call.machine_audio:
            return len(call.machine_audio) / audio.SAMPLE_RATE + BEEP_END_SECONDS
        return callee.amd_seconds

    async def _detect(self, call: SimCall, callee: Callee) -> None:
        seconds = self._amd_seconds(call, callee)
        if await self._pause(call, seconds):
            return
        await self._amd(call, callee, seconds)

    def _machine_rest(self, call: SimCall) -> bytes:
        """What is left of the answering machine's greeting and beep, from now on."""
        if not call.machine_audio or call._answered_at is None:
            return b""
        elapsed = (time.monotonic() - call._answered_at) / (self.time_scale or 1.0)
        return call.machine_audio[round(elapsed * audio.SAMPLE_RATE) :]

    async def _run_documents(
        self,
        call: SimCall,
        cursor: ScriptCursor,
        document: str | None,
        url: str | None,
        method: str,
        limit: asyncio.Timeout,
        seconds: float,
    ) -> None:
        """Run the call's TwiML (given, or fetched from `url`) until the call should end.

        The simulated party stays on the line at most `seconds` (simulated) from the moment
        the first document starts to run: `limit` is set then, so the platform's answer time
        (real time, not scaled) does not count. A redirect from the REST API
        (`pending_redirect`) replaces what runs at once, even while a document is being
        fetched: the newest instructions win, as on Twilio.
        """
        while True:
            if call.pending_redirect is not None:
                document, url, method = call.pending_redirect
                call.pending_redirect = None
            if document is None:
                if not url:
                    return await self._fail(call, tw.PARSE_FAILURE, "no TwiML to run")
                fetched = await self._fetch(call, url, method)
                if call.pending_redirect is not None:
                    continue  # replaced meanwhile
                if fetched is None:
                    return await self._fail(call, HTTP_RETRIEVAL_FAILURE, "HTTP retrieval failure")
                document, url = fetched
            if limit.when() is None:
                limit.reschedule(asyncio.get_running_loop().time() + seconds * self.time_scale)
            call.program = asyncio.create_task(self._program(call, cursor, document, url or ""))
            try:
                await call.program
            except asyncio.CancelledError:
                if call.pending_redirect is None:
                    raise
                document = None
                continue
            finally:
                call.program = None
            return None

    async def redirect(
        self, call: SimCall, twiml: str | None, url: str | None, method: str
    ) -> None:
        """Replace what the live call runs (a live stream is stopped), as on Twilio."""
        call.pending_redirect = (twiml, url, method)
        if call.program is not None:
            call.program.cancel()

    async def _amd(self, call: SimCall, callee: Callee, seconds: float) -> None:
        if callee.behaviour == "voicemail":
            detect_end = (call.machine_detection or "").lower() == "detectmessageend"
            call.answered_by = "machine_end_beep" if detect_end else "machine_start"
        else:
            call.answered_by = "human"
        call.record.heard.append({"kind": "amd", "answered_by": call.answered_by})
        if not (call.async_amd and call.async_amd_callback):
            return
        params = {
            "AccountSid": call.account_sid,
            "AnsweredBy": call.answered_by,
            "CallSid": call.sid,
            "MachineDetectionDuration": str(round(seconds * 1000)),
        }
        await self._deliver(
            call, "amd", call.async_amd_callback, params, call.async_amd_callback_method
        )

    def end_now(self, call: SimCall, status: str) -> None:
        """End a live call at once (the platform hung up); its driver sends the callback."""
        if call.status not in FINAL_STATUSES:
            self._finish(call, status)
        call.hangup.set()

    # ------------------------------------------------------------------------------ inbound
    def number_for(self, phone_number: str) -> dict[str, Any] | None:
        return next((n for n in self.numbers.values() if n["phone_number"] == phone_number), None)

    def start_inbound(self, from_: str, to: str, script: Script | None = None) -> SimCall:
        """A simulated caller dials `to`, a number bought here; the call runs in the background."""
        number = self.number_for(to)
        if number is None:
            raise LookupError(f"{to} is not a number of this account")
        if not number.get("voice_url"):
            raise ValueError(f"{to} has no VoiceUrl")
        call = SimCall(
            sid=new_sid("CA"),
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            url=number["voice_url"],
            method=(number.get("voice_method") or "POST").upper(),
            twiml=None,
            status_callback=number.get("status_callback"),
            status_callback_method=(number.get("status_callback_method") or "POST").upper(),
            # A number's StatusCallback hears only the end of calls to it (Twilio).
            status_callback_events={"completed"},
            timeout=60,
            machine_detection=None,
            async_amd=False,
            async_amd_callback=None,
            async_amd_callback_method="POST",
            phone_number_sid=number["sid"],
            direction="inbound",
            script=script or DEFAULT_CALLER,
            voice_fallback_url=number.get("voice_fallback_url"),
            voice_fallback_method=(number.get("voice_fallback_method") or "POST").upper(),
        )
        self.calls[call.sid] = call
        task = asyncio.get_running_loop().create_task(self._drive_inbound(call), name=call.sid)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call

    async def _drive_inbound(self, call: SimCall) -> None:
        try:
            await self._run_inbound(call)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the simulated inbound call %s broke", call.sid)
            if call.status not in FINAL_STATUSES:
                self._finish(call, "failed")
        finally:
            call.done.set()

    async def _fetch(self, call: SimCall, url: str, method: str) -> tuple[str, str] | None:
        """Fetch TwiML (signed, with the call's parameters); (document, url) or None."""
        response = await self._deliver(call, "twiml", url, self._call_params(call), method)
        if response is not None and response.is_success:
            return response.text, url
        return None

    async def _run_inbound(self, call: SimCall) -> None:
        assert call.script is not None and call.url is not None
        cursor = ScriptCursor(call.script, self.tts)
        self._set(call, "ringing")
        fetched = await self._fetch(call, call.url, call.method)
        if fetched is None and call.voice_fallback_url:
            fetched = await self._fetch(call, call.voice_fallback_url, call.voice_fallback_method)
        if fetched is None:
            return await self._fail(call, HTTP_RETRIEVAL_FAILURE, "HTTP retrieval failure")
        document, url = fetched
        try:
            async with asyncio.timeout(None) as limit:
                await self._run_documents(
                    call, cursor, document, url, call.method, limit, call.script.max_seconds
                )
        except TimeoutError:
            call.record.heard.append({"kind": "caller_hung_up", "reason": "max_seconds"})
        return await self._end(call, "completed")

    async def _fail(self, call: SimCall, code: int, message: str) -> None:
        call.error_code = code
        call.error_message = message
        call.record.heard.append({"kind": "error", "code": code, "message": message})
        status = "completed" if call.status == "in-progress" else "failed"
        await self._end(call, status)

    async def _answer(self, call: SimCall) -> None:
        if call.status == "in-progress":
            return
        self._set(call, "in-progress")
        call.start_time = now()
        call._answered_at = time.monotonic()
        await self._status(call, "answered", "in-progress")

    async def _program(self, call: SimCall, cursor: ScriptCursor, document: str, url: str) -> None:
        """Run TwiML documents (following <Redirect>s) until the call should end."""
        for _ in range(MAX_REDIRECTS):
            call.documents.append(document)
            try:
                verbs = tw.parse(document, base_url=url)
            except tw.TwimlError as exc:
                return await self._fail(call, exc.code, exc.message)
            next_document: tuple[str, str] | None = None
            for verb in verbs:
                if call.hangup.is_set():
                    return None
                if isinstance(verb, tw.Reject) and call.status != "in-progress":
                    call.record.heard.append({"kind": "reject", "reason": verb.reason})
                    return self._finish(call, "busy" if verb.reason == "busy" else "failed")
                await self._answer(call)
                if isinstance(verb, tw.Say):
                    call.record.heard.append({"kind": "say", "text": verb.text})
                    words = max(1, len(verb.text.split()))
                    if await self._pause(call, words * SAY_SECONDS_PER_WORD):
                        return None
                elif isinstance(verb, tw.Pause):
                    call.record.heard.append({"kind": "pause", "seconds": verb.seconds})
                    if await self._pause(call, verb.seconds):
                        return None
                elif isinstance(verb, tw.Hangup | tw.Reject):
                    call.record.heard.append({"kind": "hangup"})
                    return None
                elif isinstance(verb, tw.Redirect):
                    next_document = await self._fetch(call, verb.url, verb.method)
                    if next_document is None:
                        return await self._fail(
                            call, HTTP_RETRIEVAL_FAILURE, "HTTP retrieval failure"
                        )
                    break
                elif isinstance(verb, tw.Stream):
                    outcome = await run_stream(
                        url=verb.url,
                        parameters=verb.parameters,
                        account_sid=call.account_sid,
                        call_sid=call.sid,
                        cursor=cursor,
                        record=call.record,
                        ended=call.hangup,
                        time_scale=self.time_scale,
                        prelude=lambda: self._machine_rest(call),
                        headers={"X-Twilio-Signature": self.signature(verb.url, {})},
                    )
                    call.record.heard.append({"kind": "stream", "outcome": outcome})
                    if outcome in ("caller_hung_up", "call_ended"):
                        return None
                    if verb.action:
                        next_document = await self._fetch(call, verb.action, verb.method)
                        if next_document is None:
                            return await self._fail(
                                call, HTTP_RETRIEVAL_FAILURE, "HTTP retrieval failure"
                            )
                        break
                elif isinstance(verb, tw.Unsupported):
                    call.record.heard.append({"kind": "unsupported", "verb": verb.verb})
            if next_document is None:
                return None  # the end of the document: Twilio hangs up
            document, url = next_document
        return await self._fail(call, tw.PARSE_FAILURE, "too many redirects")

    async def _end(self, call: SimCall, status: str) -> None:
        if call.status not in FINAL_STATUSES:
            self._finish(call, status)
        if call.final_sent:
            return
        call.final_sent = True
        await self._status(call, "completed", call.status)


def parse_behaviour(value: Any) -> Behaviour:
    if value not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {', '.join(BEHAVIOURS)}")
    result: Behaviour = value
    return result
