"""Simulated parties talking to each other directly: a <Dial> bridge, or a conference.

Once two parties are bridged the platform is out of the audio path, so their scripts run
against each other instead of against a media stream: a `say` line is heard by every other
party in the room (kept in their `heard` as `{"kind": "voice", "from", "text"}`, its audio
appended to their heard audio), `wait_for_silence` waits for another party to have spoken and
then gone quiet, `wait_seconds` waits, `press` is noted, and `hang_up` leaves. A script that
runs out of steps stays on the line, silent. Script positions carry on from the media streams
before (the same cursor).

A conference (`ConferenceRoom`) is a room with Twilio's start rules: it starts once a
participant with startConferenceOnEnter=true is in it with at least one other participant;
until then participants wait (hearing the waitUrl's TwiML, hold music, or silence); a
participant with endConferenceOnExit=true ends it for everyone when they leave; the last one to
leave ends it too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from talkturo.simcaller import audio
from talkturo.simcaller.media import DIGIT_GAP_SECONDS, PartyRecord, ScriptCursor
from talkturo.simcaller.scripts import (
    HangUp,
    Interrupt,
    Press,
    Say,
    WaitForSilence,
    WaitSeconds,
)

SILENT_LINE_SECONDS = 0.2  # the pause after each line, as on a stream


@dataclass(eq=False)
class Member:
    """One party in a room: what it hears goes to `record`; it speaks from `cursor`."""

    record: PartyRecord
    number: str
    cursor: ScriptCursor
    starts_conference: bool = True
    speaking: bool = False
    lines: int = 0
    quiet_since: float = 0.0


class Room:
    def __init__(self, time_scale: float = 1.0) -> None:
        self.scale = time_scale if time_scale > 0 else 1.0
        self.members: list[Member] = []
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._created = self._loop.time()

    def now(self) -> float:
        """Simulated seconds since the room opened."""
        return round((self._loop.time() - self._created) / self.scale, 3)

    def add(self, member: Member) -> None:
        member.quiet_since = self._loop.time()
        self.members.append(member)
        self._notify()

    def remove(self, member: Member) -> None:
        if member in self.members:
            self.members.remove(member)
            self._notify()

    def others(self, member: Member) -> list[Member]:
        return [m for m in self.members if m is not member]

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def hear(self, member: Member, entry: dict[str, Any], sound: bytes = b"") -> None:
        """Everyone but `member` hears this."""
        for other in self.others(member):
            other.record.heard.append(dict(entry))
            other.record.heard_audio.extend(sound)

    # ------------------------------------------------------------------------------ talking
    async def talk(self, member: Member) -> None:
        """Run the member's script from where it got to; returns when the member hangs up."""
        steps = member.cursor.script.steps
        while member.cursor.position < len(steps):
            step = steps[member.cursor.position]
            member.cursor.position += 1
            if isinstance(step, HangUp):
                return
            await self._step(member, step)
        await asyncio.Event().wait()  # done talking: stays on the line

    async def _step(self, member: Member, step: Any) -> None:
        if isinstance(step, Say | Interrupt):
            await self._speak(member, step.text)
        elif isinstance(step, Press):
            for digit in step.digits:
                if digit != "w":
                    member.record.dtmf.append(digit)
                await asyncio.sleep((0.5 if digit == "w" else DIGIT_GAP_SECONDS) * self.scale)
        elif isinstance(step, WaitSeconds):
            await asyncio.sleep(step.seconds * self.scale)
        elif isinstance(step, WaitForSilence):
            await self._wait_for_silence(member, step.seconds, step.timeout)

    async def _speak(self, member: Member, text: str) -> None:
        speech = await member.cursor.speech(text)
        member.speaking = True
        self._notify()
        member.record.said.append(
            {
                "text": text,
                "engine": speech.engine,
                "seconds": round(speech.seconds, 3),
                "at": self.now(),
                "bridged": True,
            }
        )
        self.hear(
            member,
            {"kind": "voice", "from": member.number, "text": text, "at": self.now()},
            speech.audio + audio.silence(SILENT_LINE_SECONDS),
        )
        try:
            await asyncio.sleep((speech.seconds + SILENT_LINE_SECONDS) * self.scale)
        finally:
            member.speaking = False
            member.lines += 1
            member.quiet_since = self._loop.time()
            self._notify()

    async def _wait_for_silence(self, member: Member, seconds: float, at_most: float) -> None:
        """Until another member has said a line since now and everyone else has been quiet for
        `seconds`; `at_most` that long (simulated seconds)."""
        spoken = {id(m): m.lines for m in self.others(member)}
        deadline = self._loop.time() + at_most * self.scale
        quiet = seconds * self.scale
        while True:
            now = self._loop.time()
            if now >= deadline:
                return
            others = self.others(member)
            wait = deadline - now
            spoke = any(m.lines > spoken.get(id(m), 0) for m in others)
            if spoke and not any(m.speaking for m in others):
                since = max(m.quiet_since for m in others)
                if now - since >= quiet:
                    return
                wait = min(wait, since + quiet - now)
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), wait)
            except TimeoutError:
                continue


@dataclass(eq=False)
class ConferenceRoom:
    name: str
    sid: str
    room: Room
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def join(self, member: Member) -> None:
        self.room.add(member)
        starters = any(m.starts_conference for m in self.room.members)
        if starters and len(self.room.members) >= 2 and not self.ended.is_set():
            self.started.set()

    def leave(self, member: Member, *, ends_conference: bool) -> None:
        self.room.remove(member)
        if ends_conference or not self.room.members:
            self.ended.set()
