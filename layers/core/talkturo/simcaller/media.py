"""Twilio Media Streams, the carrier's side: what the simulator does for <Connect><Stream url>.

It opens a WebSocket to the URL and speaks the protocol as Twilio documents it:

    → connected  {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    → start      sequenceNumber "1", start {streamSid MZ…, accountSid, callSid, tracks ["inbound"],
                 customParameters (the <Parameter>s), mediaFormat audio/x-mulaw 8000 Hz mono}
    → media      every 20 ms, at real-time pace on a monotonic clock: the caller's voice (or
                 silence), 160 bytes of mu-law base64, track "inbound", chunk, timestamp (ms)
    → dtmf       {"dtmf": {"track": "inbound_track", "digit": "1"}} for each key pressed
    → mark       {"mark": {"name": …}} once the audio queued before the server's mark has played
    → stop       {"stop": {"accountSid", "callSid"}} when the caller hangs up or the call ends
    ← media      the server's audio: queued, played out at real time, kept as "heard"
    ← mark       echoed when played out
    ← clear      drops the queued audio at once; pending marks are echoed at once

Every message after `connected` carries the streamSid and a sequenceNumber counting from 1.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from talkturo.simcaller import audio
from talkturo.simcaller.scripts import (
    Converse,
    HangUp,
    Interrupt,
    LastLine,
    Press,
    Say,
    Script,
    WaitForSilence,
    WaitSeconds,
)

if TYPE_CHECKING:
    from talkturo.voice.providers.base import Synthesizer

logger = logging.getLogger("talkturo.simcaller")

CONNECT_TIMEOUT_SECONDS = 10.0
DIGIT_GAP_SECONDS = 0.1
Outcome = Literal["caller_hung_up", "server_closed", "call_ended", "connect_failed"]
# What a conversing party says next, given the text of what it heard (None: it hangs up).
NextLine = Callable[[str], Awaitable[str | None]]
# The text of heard audio (8 kHz mu-law), e.g. simcaller.voice.transcribe with a transcriber.
Ear = Callable[[bytes], Awaitable[str]]


@dataclass
class PartyRecord:
    """What the simulated party (caller or callee) said and heard during a call."""

    said: list[dict[str, Any]] = field(default_factory=list)  # {"text", "engine", "seconds"…}
    heard: list[dict[str, Any]] = field(default_factory=list)  # <Say> texts, streams, turns…
    heard_audio: bytearray = field(default_factory=bytearray)  # the server's audio, played out
    marks: list[dict[str, Any]] = field(default_factory=list)  # echoed marks
    dtmf: list[str] = field(default_factory=list)
    received: dict[str, int] = field(default_factory=dict)  # server messages by event
    cleared: list[dict[str, Any]] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)
    streams: list[dict[str, Any]] = field(default_factory=list)
    # When the server's audio started playing after a pause (stream seconds): replies' starts.
    heard_onsets: list[float] = field(default_factory=list)

    def as_dict(self, *, with_audio: bool = False) -> dict[str, Any]:
        result = {
            "said": self.said,
            "heard": self.heard,
            "heard_audio_bytes": len(self.heard_audio),
            "heard_audio_seconds": round(len(self.heard_audio) / audio.SAMPLE_RATE, 3),
            "marks": self.marks,
            "dtmf": self.dtmf,
            "received": self.received,
            "cleared": self.cleared,
            "protocol_errors": self.protocol_errors,
            "streams": self.streams,
            "heard_onsets": self.heard_onsets,
        }
        if with_audio:
            result["heard_audio"] = base64.b64encode(bytes(self.heard_audio)).decode()
        return result


class ScriptCursor:
    """A party's script and how far it got (steps go on across the call's streams).

    Lines are spoken by `voice` (the platform's text-to-speech, see simcaller.voice) when one
    is given and the script names no engine of its own; else by the offline engines.
    `converse` steps ask `next_line` for each line, with what `ear` made of the audio heard."""

    def __init__(
        self,
        script: Script,
        engine: audio.Engine = "auto",
        voice: Synthesizer | None = None,
        *,
        next_line: NextLine | None = None,
        ear: Ear | None = None,
    ) -> None:
        self.script = script
        self.engine: audio.Engine = script.tts or engine
        self.voice = voice if script.tts is None else None
        self.next_line = next_line
        self.ear = ear
        self.position = 0
        self.heard_from = 0  # where in the heard audio the party last started speaking
        self._speech: dict[str, audio.Speech] = {}

    async def speech(self, text: str) -> audio.Speech:
        if text not in self._speech:
            if self.voice is not None:
                from talkturo.simcaller.voice import synthesize

                self._speech[text] = await synthesize(self.voice, text)
            else:
                self._speech[text] = await asyncio.to_thread(
                    audio.speak, text, self.script.voice, self.engine
                )
        return self._speech[text]


@dataclass
class _Mark:
    name: str


class MediaStream:
    """One <Connect><Stream>: the WebSocket client, the caller's voice and the playout."""

    def __init__(
        self,
        *,
        url: str,
        parameters: dict[str, str],
        account_sid: str,
        call_sid: str,
        cursor: ScriptCursor,
        record: PartyRecord,
        ended: asyncio.Event,
        time_scale: float = 1.0,
        prelude: bytes | Callable[[], bytes] = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        # Sent with the WebSocket upgrade (Twilio signs it: X-Twilio-Signature over the URL).
        self.headers = headers or {}
        self.parameters = parameters
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.cursor = cursor
        self.record = record
        self.ended = ended
        self.scale = time_scale if time_scale > 0 else 1.0
        self.interval = audio.FRAME_MS / 1000 * self.scale
        self._sequence = 0
        self._chunk = 0
        # Audio the party is already playing when the stream starts (a voicemail greeting): a
        # callable is asked when the media clock starts, so the audio lines up with it.
        self._prelude = prelude
        self._outgoing = bytearray()  # the party's voice, not yet sent
        self._control: list[str] = []  # dtmf and mark echoes, sent before media
        self._playout: deque[bytes | _Mark] = deque()
        self._tick = asyncio.Event()
        self._started = 0.0
        self._last_heard = 0.0  # monotonic time the last server audio played
        self._heard_frames = 0
        self._heard_last_frame = False
        self._server_closed = asyncio.Event()
        self._ws: Any = None
        self._log: dict[str, Any] = {}

    # ------------------------------------------------------------------------------ helpers
    def now(self) -> float:
        """Simulated seconds since the stream started."""
        return round((time.monotonic() - self._started) / self.scale, 3)

    def _message(self, event: str, body: dict[str, Any] | None = None) -> str:
        self._sequence += 1
        message: dict[str, Any] = {"event": event, "sequenceNumber": str(self._sequence)}
        if body:
            message.update(body)
        message["streamSid"] = self.stream_sid
        return json.dumps(message)

    async def _wait_tick(self) -> None:
        await self._tick.wait()

    def _playing(self) -> bool:
        return any(isinstance(item, bytes) for item in self._playout)

    async def _until(self, condition: Callable[[], bool], seconds: float | None) -> bool:
        """Wait (tick by tick) until `condition` holds; False on timeout (simulated seconds)."""
        deadline = None if seconds is None else time.monotonic() + seconds * self.scale
        while not condition():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await self._wait_tick()
        return True

    # ------------------------------------------------------------------------------ run
    async def run(self) -> Outcome:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        self._log = {"url": self.url, "stream_sid": self.stream_sid, "parameters": self.parameters}
        self.record.streams.append(self._log)
        try:
            self._ws = await asyncio.wait_for(
                connect(
                    self.url,
                    open_timeout=None,
                    max_size=2**22,
                    compression=None,
                    additional_headers=self.headers,
                ),
                CONNECT_TIMEOUT_SECONDS,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            logger.warning("media stream to %s failed to connect: %s", self.url, exc)
            self._log["outcome"] = "connect_failed"
            self._log["error"] = str(exc)
            return "connect_failed"
        ws = self._ws
        outcome: Outcome = "server_closed"
        tasks: list[asyncio.Task[Any]] = []
        try:
            connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
            await ws.send(json.dumps(connected))
            await ws.send(
                self._message(
                    "start",
                    {
                        "start": {
                            "streamSid": self.stream_sid,
                            "accountSid": self.account_sid,
                            "callSid": self.call_sid,
                            "tracks": ["inbound"],
                            "customParameters": self.parameters,
                            "mediaFormat": {
                                "encoding": "audio/x-mulaw",
                                "sampleRate": audio.SAMPLE_RATE,
                                "channels": 1,
                            },
                        }
                    },
                )
            )
            self._started = time.monotonic()
            self._last_heard = self._started
            prelude = self._prelude() if callable(self._prelude) else self._prelude
            self._outgoing.extend(prelude)
            receiver = asyncio.create_task(self._receive(), name=f"{self.call_sid}-receive")
            clock = asyncio.create_task(self._clock(), name=f"{self.call_sid}-clock")
            script = asyncio.create_task(self._script(), name=f"{self.call_sid}-script")
            ended = asyncio.create_task(self.ended.wait(), name=f"{self.call_sid}-ended")
            tasks = [receiver, clock, script, ended]
            done, _ = await asyncio.wait(
                [receiver, script, ended, clock], return_when=asyncio.FIRST_COMPLETED
            )
            if script in done and not script.cancelled() and script.exception() is None:
                outcome = "caller_hung_up"
            elif ended in done:
                outcome = "call_ended"
            elif clock in done or script in done:
                error = (clock if clock in done else script).exception()
                if error is not None and not isinstance(error, WebSocketException):
                    logger.error("media stream %s broke: %r", self.stream_sid, error)
                outcome = "server_closed" if self._server_closed.is_set() else "call_ended"
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            if not self._server_closed.is_set():
                with contextlib.suppress(Exception):
                    for message in self._control:
                        await ws.send(message)
                    self._control.clear()
                    await ws.send(
                        self._message(
                            "stop",
                            {"stop": {"accountSid": self.account_sid, "callSid": self.call_sid}},
                        )
                    )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
            self._log["close"] = {"code": ws.close_code, "reason": ws.close_reason}
            self._log["outcome"] = outcome
            self._log["ended_at"] = self.now()
            self._log["chunks_sent"] = self._chunk
        return outcome

    async def _clock(self) -> None:
        """Every 20 ms (scaled) on a monotonic clock: control messages, one media frame, playout."""
        ws = self._ws
        silence = bytes([audio.SILENCE_BYTE]) * audio.FRAME_BYTES
        while True:
            target = self._started + (self._chunk + 1) * self.interval
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for message in self._control:
                await ws.send(message)
            self._control.clear()
            frame = bytes(self._outgoing[: audio.FRAME_BYTES])
            del self._outgoing[: audio.FRAME_BYTES]
            frame += silence[len(frame) :]
            self._chunk += 1
            await ws.send(
                self._message(
                    "media",
                    {
                        "media": {
                            "track": "inbound",
                            "chunk": str(self._chunk),
                            "timestamp": str((self._chunk - 1) * audio.FRAME_MS),
                            "payload": base64.b64encode(frame).decode(),
                        }
                    },
                )
            )
            self._play_frame()
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()

    def _play_frame(self) -> None:
        """Play 20 ms of the server's audio; echo the marks whose audio has played."""
        need = audio.FRAME_BYTES
        played = False
        while self._playout:
            head = self._playout[0]
            if isinstance(head, _Mark):
                self._playout.popleft()
                self._echo(head.name, cleared=False)
                continue
            if need == 0:
                break
            take = head[:need]
            self.record.heard_audio.extend(take)
            need -= len(take)
            played = True
            if len(take) == len(head):
                self._playout.popleft()
            else:
                self._playout[0] = head[len(take) :]
        if played:
            if self._heard_frames == 0 or not self._heard_last_frame:
                self.record.heard_onsets.append(self.now())
            self._last_heard = time.monotonic()
            self._heard_frames += 1
        self._heard_last_frame = played

    def _echo(self, name: str, *, cleared: bool) -> None:
        self._control.append(self._message("mark", {"mark": {"name": name}}))
        self.record.marks.append({"name": name, "at": self.now(), "cleared": cleared})

    async def _receive(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self._ws:
                self._handle(raw)
        except ConnectionClosed:
            pass
        self._server_closed.set()

    def _handle(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
            event = message["event"]
        except (ValueError, KeyError, TypeError):
            self.record.protocol_errors.append(f"not a Media Streams message: {str(raw)[:80]}")
            return
        self.record.received[event] = self.record.received.get(event, 0) + 1
        if message.get("streamSid") != self.stream_sid:
            self.record.protocol_errors.append(
                f"{event}: streamSid {message.get('streamSid')!r} is not {self.stream_sid}"
            )
        if event == "media":
            try:
                payload = base64.b64decode(message["media"]["payload"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                self.record.protocol_errors.append("media without a base64 payload")
                return
            if payload:
                self._playout.append(payload)
        elif event == "mark":
            name = (message.get("mark") or {}).get("name")
            if not isinstance(name, str):
                self.record.protocol_errors.append("mark without a name")
                return
            self._playout.append(_Mark(name))
        elif event == "clear":
            dropped = sum(len(item) for item in self._playout if isinstance(item, bytes))
            marks = [item.name for item in self._playout if isinstance(item, _Mark)]
            self._playout.clear()
            self.record.cleared.append({"at": self.now(), "dropped_bytes": dropped})
            for name in marks:
                self._echo(name, cleared=True)
        else:
            self.record.protocol_errors.append(f"unknown event {event!r}")

    # ------------------------------------------------------------------------------ script
    async def _speak(self, text: str, *, interrupt: bool = False) -> None:
        speech = await self.cursor.speech(text)
        entry = {
            "text": text,
            "engine": speech.engine,
            "seconds": round(speech.seconds, 3),
            "at": self.now(),
            "interrupt": interrupt,
            "over_audio": self._playing(),
        }
        self.record.said.append(entry)
        self.cursor.heard_from = len(self.record.heard_audio)
        self._outgoing.extend(speech.audio)
        self._outgoing.extend(audio.silence(0.2))
        await self._until(lambda: not self._outgoing, None)

    async def _script(self) -> None:
        """Run the script's steps; returns when the party hangs up."""
        steps = self.cursor.script.steps
        while self.cursor.position < len(steps):
            step = steps[self.cursor.position]
            self.cursor.position += 1
            if isinstance(step, HangUp):
                return
            if isinstance(step, Converse):
                if not await self._converse(step):
                    return
                continue
            await self._step(step)
        # Done talking: stay on the line until the other side ends the call.
        await asyncio.Event().wait()

    async def _step(self, step: Any) -> None:
        if isinstance(step, Say):
            await self._speak(step.text)
        elif isinstance(step, Interrupt):
            await self._until(self._playing, step.timeout)
            await self._speak(step.text, interrupt=True)
        elif isinstance(step, Press):
            for digit in step.digits:
                if digit == "w":
                    await self._sleep(0.5)
                    continue
                self._control.append(
                    self._message("dtmf", {"dtmf": {"track": "inbound_track", "digit": digit}})
                )
                self.record.dtmf.append(digit)
                await self._sleep(DIGIT_GAP_SECONDS)
        elif isinstance(step, WaitSeconds):
            await self._sleep(step.seconds)
        elif isinstance(step, WaitForSilence):
            await self._wait_for_silence(step.seconds, step.timeout)

    async def _wait_for_silence(self, seconds: float, within: float) -> None:
        start_frames = self._heard_frames
        quiet = seconds * self.scale

        def silent_after_speech() -> bool:
            return (
                self._heard_frames > start_frames
                and not self._playing()
                and time.monotonic() - self._last_heard >= quiet
            )

        await self._until(silent_after_speech, within)

    async def _converse(self, step: Converse) -> bool:
        """Lines written from what was heard, turn by turn; False when the party hangs up.
        The callbacks are awaited on this task: the media clock goes on meanwhile."""
        next_line, ear = self.cursor.next_line, self.cursor.ear
        if next_line is None:
            return True
        for _ in range(step.max_turns):
            await self._wait_for_silence(step.seconds, step.timeout)
            heard = bytes(self.record.heard_audio[self.cursor.heard_from :])
            self.cursor.heard_from = len(self.record.heard_audio)
            text = await ear(heard) if ear is not None and heard else ""
            self.record.heard.append({"transcribed": text, "at": self.now()})
            line = await next_line(text)
            if line is None:
                return False
            await self._speak(line)
            if isinstance(line, LastLine):
                break
        return True

    async def _sleep(self, seconds: float) -> None:
        await self._until(lambda: False, seconds)


async def run_stream(**kwargs: Any) -> Outcome:
    return await MediaStream(**kwargs).run()


Runner = Callable[..., Awaitable[Outcome]]
