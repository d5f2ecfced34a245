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

<Dial><Number> places a child call (`CA…`, direction `outbound-dial`, `parent_call_sid`) to a
simulated callee with the callee behaviours of outbound calls; answered, the two parties are
bridged (talking to each other, bridge.py) until one hangs up, then the <Dial> action is
requested (signed, POST by default) with `DialCallStatus` (completed, busy, no-answer, failed),
`DialCallSid` and `DialCallDuration`, and its TwiML continues the call. <Dial><Conference> puts
the party in a named conference (bridge.ConferenceRoom); its action is requested when the party
leaves (`DialCallStatus` answered once it was in the started conference, completed otherwise).
A REST redirect or hang-up ends a <Dial> without requesting its action, as on Twilio. <Play>
fetches its URL (signed GET), plays a PCM WAV file to the party, `loop` times (0: until
interrupted). What happened is in the party's `heard` (`dial`, `conference`, `play`, `voice`
entries) and in the call's `dials`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
import wave
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal

import httpx
import phonenumbers
from twilio.request_validator import RequestValidator

from talkturo.local.carrier_sim import twiml as tw
from talkturo.local.carrier_sim.bridge import ConferenceRoom, Member, Room
from talkturo.local.carrier_sim.inventory import OfferedNumber, build_inventory
from talkturo.simcaller import audio
from talkturo.simcaller.audio import Engine
from talkturo.simcaller.media import PartyRecord, ScriptCursor, run_stream
from talkturo.simcaller.scripts import (
    DEFAULT_CALLEE,
    DEFAULT_CALLER,
    DEFAULT_GREETING,
    Script,
    parse_script,
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
# Twilio's errors for a <Dial> it cannot place (https://www.twilio.com/docs/api/errors).
DIAL_INVALID_CALLER_ID = 13214
DIAL_INVALID_NUMBER = 13224
WAIT_VERB_NOT_ALLOWED = 13238  # waitUrl TwiML may only <Say>, <Play>, <Pause>, <Redirect>
DIGIT_SECONDS = 0.1  # how long one key's tone takes to play
DIGITS_WAIT_SECONDS = 0.5  # a `w`


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment, usegmt=False) if moment is not None else None


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Activity:
    """When each outbound call (REST-placed, direction outbound-api) was placed and ended, to the
    millisecond, and the most such calls ever live at once: what a carrier would say of the
    load it was given (`GET /_sim/activity`). `clear` starts counting again."""

    placed: dict[str, tuple[float, str, str]] = field(default_factory=dict)  # sid: at, from, to
    ended: dict[str, tuple[float, str]] = field(default_factory=dict)  # sid: at, status
    max_live: int = 0

    @property
    def live(self) -> int:
        return len(self.placed) - len(self.ended)

    def place(self, call: SimCall) -> None:
        if call.direction != "outbound-api":
            return
        self.placed[call.sid] = (time.time(), call.from_, call.to)
        self.max_live = max(self.max_live, self.live)

    def end(self, call: SimCall) -> None:
        if call.sid in self.placed and call.sid not in self.ended:
            self.ended[call.sid] = (time.time(), call.status)

    def clear(self) -> None:
        """Forget the calls that ended; the live ones stay counted."""
        for sid in self.ended:
            self.placed.pop(sid, None)
        self.ended.clear()
        self.max_live = self.live

    def as_dict(self) -> dict[str, Any]:
        calls = []
        for sid, (placed_at, from_, to) in self.placed.items():
            ended_at, status = self.ended.get(sid, (None, None))
            calls.append(
                {
                    "sid": sid,
                    "from": from_,
                    "to": to,
                    "placed_at": round(placed_at, 3),
                    "ended_at": None if ended_at is None else round(ended_at, 3),
                    "status": status,
                }
            )
        return {"live": self.live, "max_live": self.max_live, "calls": calls}


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
    parent_call_sid: str | None = None  # a <Dial>ed leg: the call that dialed it
    send_digits: str | None = None  # SendDigits: played to the callee once it answers
    dials: list[dict[str, Any]] = field(default_factory=list)  # its <Dial>s, as they went
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
        self.activity = Activity()
        self.callees: dict[str, Callee] = {}
        self.conferences: dict[str, ConferenceRoom] = {}  # live ones, by name
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
        self.activity.place(call)
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
        self.activity.end(call)
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
        if call.send_digits and await self._send_digits(call.send_digits, call.record, call.hangup):
            return await self._end(call, "completed")
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

    # ------------------------------------------------------------------------------ numbers
    # The fields of a number that hold the platform's URLs (its webhooks).
    URL_FIELDS = ("voice_url", "voice_fallback_url", "status_callback", "sms_url")

    def hold_numbers(self, numbers: list[dict[str, Any]]) -> None:
        """Numbers bought before (a restored platform's): held again, no longer on offer."""
        for number in numbers:
            self.numbers[number["sid"]] = dict(number)
            self.available.pop(number["phone_number"], None)

    def rebase_urls(self, old: str, new: str) -> None:
        """Point the numbers' webhooks that went to `old` (a base URL) at `new` instead."""
        old, new = old.rstrip("/"), new.rstrip("/")
        for number in self.numbers.values():
            for name in self.URL_FIELDS:
                value = number.get(name)
                if isinstance(value, str) and (value == old or value.startswith(old + "/")):
                    number[name] = new + value[len(old) :]

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
                if not (isinstance(verb, tw.Dial) and verb.answer_on_bridge):
                    await self._answer(call)  # answerOnBridge: answered when the bridge is
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
                elif isinstance(verb, tw.Play):
                    if await self._play(call, verb):
                        return None
                elif isinstance(verb, tw.Dial):
                    status, extra, hung_up = await self._dial(call, cursor, verb)
                    if call.hangup.is_set():
                        return None  # the platform ended the call: no action request
                    if hung_up:
                        self._finish(call, "completed")
                    if verb.action:
                        params = {**self._call_params(call), "DialCallStatus": status, **extra}
                        answer = await self._deliver(
                            call, "action", verb.action, params, verb.method
                        )
                        if hung_up:
                            return None  # the party is gone: the answer runs nowhere
                        if answer is None or not answer.is_success:
                            return await self._fail(
                                call, HTTP_RETRIEVAL_FAILURE, "HTTP retrieval failure"
                            )
                        next_document = (answer.text, verb.action)
                        break
                    if hung_up:
                        return None
                elif isinstance(verb, tw.Unsupported):
                    call.record.heard.append({"kind": "unsupported", "verb": verb.verb})
            if next_document is None:
                return None  # the end of the document: Twilio hangs up
            document, url = next_document
        return await self._fail(call, tw.PARSE_FAILURE, "too many redirects")

    # ------------------------------------------------------------------------------ <Play>
    async def _media(self, call: SimCall, url: str) -> tuple[bytes | None, str | None]:
        """The file at `url` (a signed GET, as Twilio fetches media) as mu-law, or an error."""
        response = await self._deliver(call, "media", url, {}, "GET")
        if response is None:
            return None, "HTTP retrieval failure"
        if not response.is_success:
            return None, f"HTTP {response.status_code}"
        try:
            return audio.wav_to_mulaw(response.content), None
        except (wave.Error, EOFError, ValueError) as exc:
            return None, f"not a PCM WAV file ({exc})"

    async def _play(self, call: SimCall, verb: tw.Play) -> bool:
        """Play the file to the party `loop` times (0: until interrupted); True when the call
        ended meanwhile."""
        entry: dict[str, Any] = {"kind": "play", "url": verb.url, "loop": verb.loop, "played": 0}
        call.record.heard.append(entry)
        sound, error = await self._media(call, verb.url)
        if sound is None:
            entry["error"] = error
            return call.hangup.is_set()
        seconds = len(sound) / audio.SAMPLE_RATE
        entry["seconds"] = round(seconds, 3)
        while verb.loop == 0 or entry["played"] < verb.loop:
            call.record.heard_audio.extend(sound)
            entry["played"] += 1
            if await self._pause(call, seconds):
                return True
            if not sound:
                break
        return False

    # ------------------------------------------------------------------------------ <Dial>
    @staticmethod
    def _party_number(call: SimCall) -> str:
        """Who the simulated party of the call is: the caller of an inbound call, else the
        callee."""
        return call.from_ if call.direction == "inbound" else call.to

    async def _dial(
        self, call: SimCall, cursor: ScriptCursor, verb: tw.Dial
    ) -> tuple[str, dict[str, str], bool]:
        """Run a <Dial>: (DialCallStatus, the action's other parameters, whether the party
        hung up meanwhile)."""
        if verb.conference is not None:
            return await self._conference(call, cursor, verb.conference)
        assert verb.number is not None
        return await self._dial_number(call, cursor, verb, verb.number)

    async def _wait_any(self, seconds: float, *events: asyncio.Event) -> bool:
        """Wait `seconds` (simulated); True as soon as one of `events` is set."""
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=max(0.0, seconds) * self.time_scale, return_when="FIRST_COMPLETED"
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        return bool(done)

    async def _dial_number(
        self, call: SimCall, cursor: ScriptCursor, verb: tw.Dial, number: str
    ) -> tuple[str, dict[str, str], bool]:
        entry: dict[str, Any] = {
            "kind": "dial",
            "to": number,
            "caller_id": verb.caller_id,
            "timeout": verb.timeout,
            "ring_tone": verb.ring_tone,
            "answer_on_bridge": verb.answer_on_bridge,
            "dial_call_sid": None,
            "outcome": None,
            "bridged_seconds": 0.0,
        }
        call.record.heard.append(entry)
        call.dials.append(entry)
        if verb.caller_id and self.number_for(verb.caller_id) is None:
            # Twilio: the caller ID must be a number of the account (or verified).
            entry.update(outcome="failed", error_code=DIAL_INVALID_CALLER_ID)
            return "failed", {}, False
        try:
            valid = phonenumbers.is_valid_number(phonenumbers.parse(number, None))
        except phonenumbers.NumberParseException:
            valid = False
        if not valid:
            entry.update(outcome="failed", error_code=DIAL_INVALID_NUMBER)
            return "failed", {}, False
        leg = SimCall(
            sid=new_sid("CA"),
            account_sid=call.account_sid,
            to=number,
            from_=verb.caller_id or call.from_,
            url=None,
            method="POST",
            twiml=None,
            status_callback=None,
            status_callback_method="POST",
            status_callback_events=set(),
            timeout=verb.timeout,
            machine_detection=None,
            async_amd=False,
            async_amd_callback=None,
            async_amd_callback_method="POST",
            phone_number_sid=None,
            direction="outbound-dial",
            parent_call_sid=call.sid,
        )
        self.calls[leg.sid] = leg
        entry["dial_call_sid"] = leg.sid
        callee = self.callee(number)
        try:
            status = await self._ring(call, leg, callee, verb.timeout)
            if status != "answered":
                entry["outcome"] = status
                return status, {"DialCallSid": leg.sid, "DialCallDuration": "0"}, False
            await self._answer(call)  # answerOnBridge: the caller is answered now
            if verb.send_digits:
                await self._send_digits(verb.send_digits, leg.record, call.hangup, leg.hangup)
            started = time.monotonic()
            ender = await self._bridge(call, cursor, leg, callee)
            seconds = (time.monotonic() - started) / (self.time_scale or 1.0)
            entry.update(outcome="completed", bridged_seconds=round(seconds, 3), ended_by=ender)
            duration = str(max(1, math.ceil(seconds)))
            return (
                "completed",
                {"DialCallSid": leg.sid, "DialCallDuration": duration},
                ender == "caller",
            )
        except asyncio.CancelledError:
            entry["outcome"] = "redirected"  # the platform gave the call new TwiML
            raise
        finally:
            if leg.status not in FINAL_STATUSES:
                self._finish(leg, "completed" if leg.status == "in-progress" else "canceled")
            if entry["outcome"] is None:
                entry["outcome"] = "canceled"  # the platform ended the call
            leg.done.set()

    async def _ring(self, call: SimCall, leg: SimCall, callee: Callee, ring_for: int) -> str:
        """Ring the dialed leg: "answered", or the DialCallStatus it ended with."""
        self._set(leg, "ringing")
        if callee.behaviour == "failed":
            if await self._wait_any(0.1, call.hangup, leg.hangup):
                return "canceled"
            self._finish(leg, "failed")
            return "failed"
        if callee.behaviour == "busy":
            if await self._wait_any(min(callee.ring_seconds, 1.0), call.hangup, leg.hangup):
                return "canceled"
            self._finish(leg, "busy")
            return "busy"
        if callee.behaviour == "no_answer" or callee.ring_seconds > ring_for:
            if await self._wait_any(ring_for, call.hangup, leg.hangup):
                return "canceled"
            self._finish(leg, "no-answer")
            return "no-answer"
        if await self._wait_any(callee.ring_seconds, call.hangup, leg.hangup):
            return "canceled"
        self._set(leg, "in-progress")
        leg.start_time = now()
        leg._answered_at = time.monotonic()
        return "answered"

    async def _send_digits(self, digits: str, record: PartyRecord, *ended: asyncio.Event) -> bool:
        """Play `digits` to the party that answered (`record`), key by key: the party hears a
        `digits` entry. True when the call ended meanwhile."""
        entry: dict[str, Any] = {"kind": "digits", "digits": "", "send_digits": digits}
        record.heard.append(entry)
        for key in digits:
            if await self._wait_any(DIGITS_WAIT_SECONDS if key == "w" else DIGIT_SECONDS, *ended):
                return True
            if key != "w":
                entry["digits"] += key
        return False

    def _callee_cursor(self, callee: Callee) -> ScriptCursor:
        if callee.behaviour == "voicemail":
            # A machine: its greeting (the beep follows), then it listens.
            greeting = (callee.script.greeting if callee.script else None) or DEFAULT_GREETING
            return ScriptCursor(parse_script([{"say": greeting}]), self.tts)
        return ScriptCursor(callee.script or DEFAULT_CALLEE, self.tts)

    async def _bridge(
        self, call: SimCall, cursor: ScriptCursor, leg: SimCall, callee: Callee
    ) -> str:
        """The party and the dialed callee talk until one hangs up: who ended it ("caller",
        "callee", or "platform" when the call was ended from the REST API)."""
        room = Room(self.time_scale)
        party = Member(call.record, self._party_number(call), cursor)
        other = Member(leg.record, leg.to, self._callee_cursor(callee))
        room.add(party)
        room.add(other)
        talking = asyncio.ensure_future(room.talk(party))
        answering = asyncio.ensure_future(room.talk(other))
        limit = asyncio.ensure_future(asyncio.sleep(callee.limit * self.time_scale))
        platform = asyncio.ensure_future(call.hangup.wait())
        leg_ended = asyncio.ensure_future(leg.hangup.wait())
        done = await first_of([talking, answering, limit, platform, leg_ended])
        if talking in done:
            leg.record.heard.append({"kind": "other_hung_up", "from": party.number})
            return "caller"
        if platform in done:
            return "platform"
        if limit in done:
            leg.record.heard.append({"kind": "callee_hung_up", "reason": "max_seconds"})
        call.record.heard.append({"kind": "other_hung_up", "from": other.number})
        return "callee"

    # ------------------------------------------------------------------------------ conference
    def _room(self, name: str) -> ConferenceRoom:
        conference = self.conferences.get(name)
        if conference is None or conference.ended.is_set():
            conference = ConferenceRoom(name, new_sid("CF"), Room(self.time_scale))
            self.conferences[name] = conference
        return conference

    async def _conference(
        self, call: SimCall, cursor: ScriptCursor, noun: tw.Conference
    ) -> tuple[str, dict[str, str], bool]:
        conference = self._room(noun.name)
        member = Member(
            call.record,
            self._party_number(call),
            cursor,
            starts_conference=noun.start_conference_on_enter,
        )
        entry: dict[str, Any] = {
            "kind": "conference",
            "name": noun.name,
            "conference_sid": conference.sid,
            "start_conference_on_enter": noun.start_conference_on_enter,
            "end_conference_on_exit": noun.end_conference_on_exit,
            "wait_url": noun.wait_url,
            "outcome": None,
            "waited_seconds": 0.0,
            "bridged_seconds": 0.0,
        }
        call.record.heard.append(entry)
        call.dials.append(entry)
        conference.join(member)  # starts it, when this participant may and is not alone
        if conference.started.is_set() and noun.beep in ("true", "onEnter"):
            conference.room.hear(member, {"kind": "beep", "conference": noun.name})
        joined = time.monotonic()
        bridged_at: float | None = None
        hung_up = False
        try:
            if not conference.started.is_set():
                hold = asyncio.ensure_future(self._hold(call, noun))
                waiters = [
                    asyncio.ensure_future(conference.started.wait()),
                    asyncio.ensure_future(conference.ended.wait()),
                    asyncio.ensure_future(call.hangup.wait()),
                ]
                try:
                    await asyncio.wait([hold, *waiters], return_when="FIRST_COMPLETED")
                finally:
                    for task in (hold, *waiters):
                        task.cancel()
                    for task in (hold, *waiters):
                        with contextlib.suppress(BaseException):
                            await task
            entry["waited_seconds"] = round(
                (time.monotonic() - joined) / (self.time_scale or 1.0), 3
            )
            live = not (conference.ended.is_set() or call.hangup.is_set())
            if conference.started.is_set() and live:
                bridged_at = time.monotonic()
                talking = asyncio.ensure_future(conference.room.talk(member))
                ended = asyncio.ensure_future(conference.ended.wait())
                platform = asyncio.ensure_future(call.hangup.wait())
                done = await first_of([talking, ended, platform])
                hung_up = talking in done
        except asyncio.CancelledError:
            entry["outcome"] = "redirected"  # the platform gave the call new TwiML
            raise
        finally:
            if bridged_at is not None:
                entry["bridged_seconds"] = round(
                    (time.monotonic() - bridged_at) / (self.time_scale or 1.0), 3
                )
            conference.leave(member, ends_conference=noun.end_conference_on_exit)
            if noun.beep in ("true", "onExit") and conference.started.is_set():
                conference.room.hear(member, {"kind": "beep", "conference": noun.name})
            if self.conferences.get(noun.name) is conference and conference.ended.is_set():
                del self.conferences[noun.name]
            if entry["outcome"] is None:
                entry["outcome"] = "answered" if bridged_at is not None else "completed"
            if entry["outcome"] == "completed" and call.hangup.is_set():
                entry["outcome"] = "canceled"
        return str(entry["outcome"]), {}, hung_up

    async def _hold(self, call: SimCall, noun: tw.Conference) -> None:
        """What a participant hears while the conference has not started (runs until
        cancelled): the waitUrl's TwiML, the carrier's hold music, or silence."""
        if noun.wait_url is None:
            call.record.heard.append({"kind": "hold_music", "conference": noun.name})
        elif noun.wait_url:
            url, method = noun.wait_url, noun.wait_method
            for _ in range(MAX_REDIRECTS):
                answer = await self._deliver(call, "wait", url, self._call_params(call), method)
                if answer is None or not answer.is_success:
                    call.record.heard.append({"kind": "error", "code": HTTP_RETRIEVAL_FAILURE})
                    break
                try:
                    verbs = tw.parse(answer.text, base_url=url)
                except tw.TwimlError as exc:
                    call.record.heard.append({"kind": "error", "code": exc.code})
                    break
                redirect = await self._run_wait_verbs(call, verbs)
                if redirect is None:
                    break
                url, method = redirect.url, redirect.method
        await asyncio.Event().wait()  # then silence until the conference starts or ends

    async def _run_wait_verbs(self, call: SimCall, verbs: list[tw.Verb]) -> tw.Redirect | None:
        for verb in verbs:
            if isinstance(verb, tw.Play):
                if await self._play(call, verb):
                    return None
            elif isinstance(verb, tw.Say):
                call.record.heard.append({"kind": "say", "text": verb.text})
                if await self._pause(call, max(1, len(verb.text.split())) * SAY_SECONDS_PER_WORD):
                    return None
            elif isinstance(verb, tw.Pause):
                if await self._pause(call, verb.seconds):
                    return None
            elif isinstance(verb, tw.Redirect):
                return verb
            else:
                name = type(verb).__name__ if not isinstance(verb, tw.Unsupported) else verb.verb
                call.record.heard.append(
                    {"kind": "unsupported", "verb": name, "code": WAIT_VERB_NOT_ALLOWED}
                )
        return None

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


async def first_of(tasks: list[asyncio.Future[Any]]) -> set[asyncio.Future[Any]]:
    """Wait until one of the tasks ends; cancel and await the others. The ones that ended."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    return done
