"""The simulated phone network behind the carrier simulator: numbers, callees and calls.

All state lives on the simulator's event loop and is only touched from it (REST handlers are
coroutines on that loop, and so are the tasks that drive calls), so it needs no locks.

An outbound call is driven like Twilio drives one: status callbacks in Twilio's order with
Twilio's parameter names, the call's Url fetched (POST) when it is answered, the asynchronous
answering-machine result sent to AsyncAmdStatusCallback, and every request signed with
X-Twilio-Signature exactly as Twilio signs (the SDK's own RequestValidator.compute_signature).
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

from talkturo.local.carrier_sim.inventory import OfferedNumber, build_inventory

logger = logging.getLogger("local.carrier_sim")

API_VERSION = "2010-04-01"
Behaviour = Literal["human", "no_answer", "busy", "failed", "voicemail"]
BEHAVIOURS: tuple[str, ...] = ("human", "no_answer", "busy", "failed", "voicemail")
FINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
CALLBACK_TIMEOUT_SECONDS = 10.0
USER_AGENT = "TwilioProxy/1.1"


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
    talk_seconds: float = 20.0
    amd_seconds: float = 1.5

    def as_dict(self) -> dict[str, Any]:
        return {
            "behaviour": self.behaviour,
            "ring_seconds": self.ring_seconds,
            "talk_seconds": self.talk_seconds,
            "amd_seconds": self.amd_seconds,
        }


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
    generation: int = 0  # bumped by each TwiML document the call starts to run
    # What happened, for tests and the control API.
    events: list[dict[str, Any]] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)  # TwiML the call executed, in order
    hangup: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _answered_at: float | None = None


class Network:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        time_scale: float = 1.0,
        seed: int = 2010,
    ) -> None:
        self.account_sid = account_sid
        self.time_scale = time_scale
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
            "Direction": "outbound-api",
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
        call.sequence += 1
        await self._deliver(
            call, "status", call.status_callback, params, call.status_callback_method
        )

    async def _deliver(
        self, call: SimCall, kind: str, url: str, params: dict[str, str], method: str
    ) -> httpx.Response | None:
        record: dict[str, Any] = {"kind": kind, "url": url, "params": params}
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
        if await self._pause(call, min(callee.ring_seconds, call.timeout)):
            return await self._end(call, "canceled")
        # Answered (by a person or by a voicemail box).
        self._set(call, "in-progress")
        call.start_time = now()
        call._answered_at = time.monotonic()
        await self._status(call, "answered", "in-progress")
        if await self._execute(call, call.twiml, call.url, call.method):
            return await self._end(call, "completed")
        talk = callee.talk_seconds
        if call.machine_detection:
            amd = min(callee.amd_seconds, talk)
            if await self._pause(call, amd):
                return await self._end(call, "completed")
            talk -= amd
            await self._amd(call, callee, amd)
        await self._pause(call, talk)
        return await self._end(call, "completed")

    async def _execute(
        self, call: SimCall, twiml: str | None, url: str | None, method: str
    ) -> bool:
        """Run the call's TwiML (given, or fetched from its Url); True when it hangs up.

        A redirect that arrives while a document is being fetched wins: the older document
        is dropped, as on Twilio, where the newest instructions replace whatever ran before.
        """
        call.generation += 1
        generation = call.generation
        if twiml is None and url:
            response = await self._deliver(call, "twiml", url, self._call_params(call), method)
            twiml = response.text if response is not None and response.is_success else None
        if generation != call.generation:
            return False  # replaced meanwhile
        if twiml is None:
            return True  # nothing to run: Twilio ends the call (an application error)
        call.documents.append(twiml)
        return "<Hangup" in twiml or "<Reject" in twiml

    async def redirect(
        self, call: SimCall, twiml: str | None, url: str | None, method: str
    ) -> None:
        if await self._execute(call, twiml, url, method):
            self.end_now(call, "completed")

    async def _amd(self, call: SimCall, callee: Callee, seconds: float) -> None:
        if callee.behaviour == "voicemail":
            detect_end = (call.machine_detection or "").lower() == "detectmessageend"
            call.answered_by = "machine_end_beep" if detect_end else "machine_start"
        else:
            call.answered_by = "human"
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

    async def _end(self, call: SimCall, status: str) -> None:
        if call.status not in FINAL_STATUSES:
            self._finish(call, status)
        await self._status(call, "completed", call.status)


def parse_behaviour(value: Any) -> Behaviour:
    if value not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {', '.join(BEHAVIOURS)}")
    result: Behaviour = value
    return result
