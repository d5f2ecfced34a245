"""The voice service's pure parts, one by one: the Media Streams messages, the reply chunker,
turn detection, the paced playout, the transcript, the stereo recording, the credit meter, the
prompt variables and the telephone-audio helpers.

Time is virtual wherever the code waits: `FakeTime` is both the injected clock and
`asyncio.sleep`, and a test moves it forward explicitly, so pacing and metering are checked
frame by frame without real waiting.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import threading
import wave
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from pytest_socket import disable_socket, enable_socket

from talkturo import audio
from talkturo.domain.assistants import AssistantRecord
from talkturo.domain.calls import CallRecord, TranscriptMessage
from talkturo.domain.companies import Company
from talkturo.domain.contacts import Contact
from talkturo.errors import InsufficientCredits
from talkturo.voice import protocol
from talkturo.voice.chunker import CLAUSE_CHARS, FIRST_CLAUSE_CHARS, MAX_CHARS, Chunker
from talkturo.voice.context import CallContext
from talkturo.voice.metering import Meter
from talkturo.voice.playout import FRAME_SECONDS, LEAD, Playout, Segment
from talkturo.voice.providers.base import ToolCall, Transcript, UtteranceEnd
from talkturo.voice.recording import StereoRecorder
from talkturo.voice.transcript import TranscriptLog
from talkturo.voice.turns import (
    AWAIT_WORDS_SECONDS,
    END_SILENCE_MS,
    ONSET_VOICED_FRAMES,
    ONSET_WINDOW_FRAMES,
    STUCK_SILENCE_MS,
    TurnDetector,
    TurnText,
    VoiceActivity,
)

_real_sleep = asyncio.sleep
EPS = 1e-9


@pytest.fixture(autouse=True)
def _event_loop_sockets() -> Iterator[None]:
    """The network stays blocked; an event loop's own AF_UNIX self-pipe is allowed."""
    enable_socket()
    disable_socket(allow_unix_socket=True)
    yield


class FakeTime:
    """A monotonic clock and an `asyncio.sleep` that only move when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float, result: Any = None) -> Any:
        if delay <= 0:
            await _real_sleep(0)
            return result
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + delay, future))
        await future
        return result

    @property
    def next_wake(self) -> float | None:
        pending = [due for due, future in self._sleepers if not future.done()]
        return min(pending) if pending else None

    async def settle(self) -> None:
        """Let every task run until it waits again (no real time passes)."""
        for _ in range(30):
            await _real_sleep(0)

    def _wake_due(self) -> bool:
        woke = False
        for due, future in self._sleepers:
            if due <= self.now + EPS and not future.done():
                future.set_result(None)
                woke = True
        self._sleepers = [(d, f) for d, f in self._sleepers if not f.done()]
        return woke

    async def advance_to(self, target: float) -> None:
        """Move to `target`, waking each sleeper at its own deadline on the way."""
        await self.settle()
        while True:
            wake = self.next_wake
            if wake is None or wake > target:
                break
            self.now = max(self.now, wake)
            self._wake_due()
            await self.settle()
        self.now = max(self.now, target)

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self.now + seconds)

    async def stall(self, seconds: float) -> None:
        """The process was stuck: the clock jumps, and sleepers wake late."""
        self.now += seconds
        self._wake_due()
        await self.settle()


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    time = FakeTime()
    monkeypatch.setattr(asyncio, "sleep", time.sleep)
    return time


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, timeout=10)

    return asyncio.run(main())


async def until(condition: Callable[[], bool], limit: float = 3.0) -> None:
    """Wait for work done in a worker thread (real time, bounded)."""
    async with asyncio.timeout(limit):
        while not condition():
            await _real_sleep(0.001)


# =========================================================================== protocol

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def _msg(**fields: Any) -> str:
    return json.dumps(fields)


def test_parse_connected_and_start_with_custom_parameters_and_media_format() -> None:
    assert protocol.parse(
        _msg(event="connected", protocol="Call", version="1.0.0")
    ) == protocol.Connected("Call")
    start = protocol.parse(
        _msg(
            event="start",
            sequenceNumber="1",
            streamSid=SID,
            start={
                "accountSid": "AC123",
                "streamSid": SID,
                "callSid": "CA456",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {"token": "tok.en", "resume": "transfer_failed"},
            },
        )
    )
    assert start == protocol.Start(
        stream_sid=SID,
        call_sid="CA456",
        account_sid="AC123",
        parameters={"token": "tok.en", "resume": "transfer_failed"},
        encoding="audio/x-mulaw",
        sample_rate=8000,
        channels=1,
    )
    # The streamSid may only be given at the top level; the format is read, not assumed.
    other = protocol.parse(
        _msg(
            event="start",
            streamSid="MZ2",
            start={"callSid": "CA9", "mediaFormat": {"encoding": "audio/l16", "sampleRate": 16000}},
        )
    )
    assert isinstance(other, protocol.Start)
    assert (other.stream_sid, other.call_sid, other.parameters) == ("MZ2", "CA9", {})
    assert (other.encoding, other.sample_rate) == ("audio/l16", 16000)


def test_parse_media_dtmf_mark_stop() -> None:
    payload = bytes(range(256))[:160]
    media = protocol.parse(
        _msg(
            event="media",
            sequenceNumber="3",
            streamSid=SID,
            media={
                "track": "inbound",
                "chunk": "1",
                "timestamp": "1240",
                "payload": base64.b64encode(payload).decode(),
            },
        )
    )
    assert media == protocol.Media(payload, 1240)
    untimed = protocol.parse(
        _msg(event="media", media={"payload": base64.b64encode(b"ab").decode()})
    )
    assert untimed == protocol.Media(b"ab", 0)
    dtmf = protocol.parse(
        _msg(event="dtmf", streamSid=SID, dtmf={"track": "inbound_track", "digit": "7"})
    )
    assert dtmf == protocol.Dtmf("7")
    assert protocol.parse(_msg(event="mark", streamSid=SID, mark={"name": "seg-3"})) == (
        protocol.Mark("seg-3")
    )
    stop = protocol.parse(
        _msg(event="stop", streamSid=SID, stop={"accountSid": "AC1", "callSid": "CA1"})
    )
    assert stop == protocol.Stop()
    assert protocol.parse(_msg(event="something_new", streamSid=SID)) is None


def test_outbound_track_media_is_ignored() -> None:
    encoded = base64.b64encode(b"\x7f" * 160).decode()
    assert (
        protocol.parse(_msg(event="media", media={"track": "outbound", "payload": encoded})) is None
    )
    inbound = protocol.parse(
        _msg(event="media", media={"track": "inbound_track", "payload": encoded, "timestamp": 20})
    )
    assert inbound == protocol.Media(b"\x7f" * 160, 20)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        b"\xff\xfe",
        "[]",
        "null",
        '"media"',
        _msg(streamSid=SID),  # no event
        _msg(event="media", media={"payload": "%%% not base64 %%%"}),
        _msg(event="media", media={"timestamp": "20"}),  # no payload
        _msg(event="media", media={"payload": "AAAA", "timestamp": "soon"}),
        _msg(event="dtmf", dtmf={}),
        _msg(event="mark"),
        _msg(event="start", start={"callSid": "CA1"}),  # no streamSid anywhere
        _msg(event="start", streamSid=SID, start={"mediaFormat": {"sampleRate": "fast"}}),
    ],
)
def test_malformed_messages_raise_protocol_error(raw: str | bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.parse(raw)


@pytest.mark.parametrize(
    "raw",
    [
        _msg(event="media", streamSid=SID, media=None),
        _msg(event="media", streamSid=SID, media="AAAA"),
        _msg(event="start", streamSid=SID, start={"mediaFormat": "audio/x-mulaw"}),
        _msg(event="start", streamSid=SID, start={"customParameters": ["token"]}),
    ],
)
def test_wrongly_typed_nested_objects_raise_protocol_error(raw: str) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.parse(raw)


def test_outbound_media_mark_clear_shapes() -> None:
    payload = bytes([0, 1, 2, 0xFE, 0xFF]) * 32
    media = json.loads(protocol.media(SID, payload))
    assert media == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": base64.b64encode(payload).decode()},
    }
    assert base64.b64decode(media["media"]["payload"]) == payload
    # The service's own media message parses back to the same audio.
    assert protocol.parse(protocol.media(SID, payload)) == protocol.Media(payload, 0)
    assert json.loads(protocol.mark(SID, "seg-12")) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "seg-12"},
    }
    assert json.loads(protocol.clear(SID)) == {"event": "clear", "streamSid": SID}


# =========================================================================== chunker


def _feed_all(chunker: Chunker, deltas: list[str]) -> list[str]:
    pieces: list[str] = []
    for delta in deltas:
        pieces += chunker.feed(delta)
    return pieces + chunker.flush()


def test_chunker_cuts_at_sentence_ends_once_followed_by_a_space() -> None:
    chunker = Chunker()
    assert chunker.feed("Hello there.") == []  # "." might be "3.5": wait for what follows
    assert chunker.feed(" How are you? I") == ["Hello there.", "How are you?"]
    assert chunker.feed(" am fine! And") == ["I am fine!"]
    assert chunker.flush() == ["And"]
    assert chunker.flush() == []


def test_first_piece_is_cut_early_at_a_clause_later_pieces_wait_for_longer_clauses() -> None:
    chunker = Chunker()
    # A short clause is not worth a request of its own.
    assert chunker.feed("Hi, I") == []
    first = chunker.feed(" am calling from Acme Dental, about")
    assert first == ["Hi, I am calling from Acme Dental,"]
    assert len(first[0]) >= FIRST_CLAUSE_CHARS
    # Later pieces: a clause of first-piece length is not enough ...
    assert chunker.feed(" your appointment next week, which") == []
    # ... one past CLAUSE_CHARS is.
    later = chunker.feed(" we would like to move to Friday morning, if")
    assert later == [
        "about your appointment next week, which we would like to move to Friday morning,"
    ]
    assert len(later[0]) >= CLAUSE_CHARS
    assert chunker.flush() == ["if"]


def test_abbreviations_and_decimals_do_not_end_a_sentence() -> None:
    chunker = Chunker()
    text = "Dr. Smith charges 3.5 dollars, e.g. for Mr. Jones. Next"
    assert chunker.feed(text) == ["Dr. Smith charges 3.5 dollars, e.g. for Mr. Jones."]
    # A decimal split across deltas: the "." is not cut before its digits arrive.
    chunker = Chunker()
    assert chunker.feed("It costs 3.") == []
    assert chunker.feed("75 today. Ok") == ["It costs 3.75 today."]


def test_long_text_without_punctuation_is_cut_at_a_space() -> None:
    words = [f"word{i:03d}" for i in range(60)]  # 479 characters, no punctuation
    chunker = Chunker()
    pieces = chunker.feed(" ".join(words))
    assert pieces, "text past MAX_CHARS must not wait for punctuation"
    assert all(len(piece) <= MAX_CHARS for piece in pieces)
    for piece in pieces:
        assert all(token in words for token in piece.split())  # never inside a word
    assert " ".join(pieces + chunker.flush()) == " ".join(words)
    # Without any space it is cut at MAX_CHARS.
    chunker = Chunker()
    assert chunker.feed("x" * (MAX_CHARS + 5)) == ["x" * MAX_CHARS]
    assert chunker.flush() == ["xxxxx"]


def test_cjk_punctuation_cuts_without_a_space() -> None:
    chunker = Chunker()
    full_stop, exclamation, question = "\u3002", "\uff01", "\uff1f"
    text = f"\u4f60\u597d{full_stop}\u4eca\u5929\u5929\u6c14\u5f88\u597d{exclamation}\u4f60\u5462"
    assert chunker.feed(text) == [
        f"\u4f60\u597d{full_stop}",
        f"\u4eca\u5929\u5929\u6c14\u5f88\u597d{exclamation}",
    ]
    assert chunker.feed(question) == [f"\u4f60\u5462{question}"]
    assert chunker.flush() == []


def test_streamed_pieces_put_together_are_the_reply() -> None:
    reply = (
        "Thanks for calling Bright Smile Dental, this is Ava. I can see you have a cleaning "
        "booked with Dr. Patel on Friday at 9.30 in the morning, and I wanted to check whether "
        "that still works for you; if not, we have openings on Monday, Tuesday and Wednesday "
        "afternoon, e.g. at two or at four. Would either of those suit you? Let me know!"
    )
    for size in (1, 3, 7, 40, len(reply)):
        deltas = [reply[i : i + size] for i in range(0, len(reply), size)]
        pieces = _feed_all(Chunker(), deltas)
        assert len(pieces) >= 4
        assert all(piece == piece.strip() and piece for piece in pieces)
        assert " ".join(pieces) == reply
        # Streamed in small deltas the first clause goes out alone; given at once, the first
        # sentence is already complete and is the first piece.
        first = "Thanks for calling Bright Smile Dental," if size < 52 else reply[:52]
        assert pieces[0] == first


# =========================================================================== turns

T0 = 500.0
FRAME = 0.02


def _frames(detector: TurnDetector, pattern: str, start: float) -> float:
    """Feed frames ('x' voiced, '.' not) from `start`; the time after the last one."""
    now = start
    for char in pattern:
        detector.on_frame(char == "x", now)
        now += FRAME
    return now


def test_onset_needs_enough_voiced_frames_not_a_click() -> None:
    detector = TurnDetector()
    now = _frames(detector, "xxx" + "." * 20, T0)  # a click, then quiet
    assert not detector.take_onset()
    assert not detector.speaking
    now = _frames(detector, "x" * (ONSET_VOICED_FRAMES - 1), now)
    assert not detector.take_onset()
    now = _frames(detector, "x", now)
    assert detector.speaking
    assert detector.take_onset()
    assert not detector.take_onset()  # once per onset
    # Speech with short gaps is one onset; a full quiet window ends it, the next speech is new.
    now = _frames(detector, "xx.xxx.xx", now)
    assert not detector.take_onset()
    now = _frames(detector, "." * ONSET_WINDOW_FRAMES, now)
    assert not detector.speaking
    _frames(detector, "x" * ONSET_VOICED_FRAMES, now)
    assert detector.take_onset()


def test_words_from_the_transcriber_are_an_onset() -> None:
    detector = TurnDetector()
    detector.on_transcriber(Transcript("hel", final=False), T0)
    assert detector.take_onset()
    detector.on_transcriber(Transcript("hello", final=False), T0 + 0.1)
    assert not detector.take_onset()


def test_transcriber_end_signal_ends_the_turn_while_the_window_is_still_voiced() -> None:
    detector = TurnDetector()
    now = _frames(detector, "x" * 20, T0)
    detector.on_transcriber(Transcript("I'd like to book", final=True), now)
    assert detector.end_of_turn(now) is None  # a final alone is not the end
    detector.on_transcriber(Transcript("a table", final=True, end_of_turn=True), now)
    assert detector.speaking  # the window still holds the last syllables
    assert detector.end_of_turn(now) == _turn("I'd like to book a table", "transcriber")


def test_utterance_end_is_an_end_signal_too() -> None:
    detector = TurnDetector()
    now = _frames(detector, "x" * 15 + "...", T0)
    detector.on_transcriber(Transcript("yes please", final=True), now)
    detector.on_transcriber(UtteranceEnd(), now + 0.01)
    assert detector.end_of_turn(now + 0.01) == _turn("yes please", "transcriber")


def test_no_end_while_voice_arrives_after_the_signal() -> None:
    detector = TurnDetector()
    now = _frames(detector, "x" * 15, T0)
    detector.on_transcriber(Transcript("so I was", final=True, end_of_turn=True), now)
    now = _frames(detector, "xx", now)  # the caller goes on
    assert detector.end_of_turn(now) is None
    now = _frames(detector, "x" * 10, now)
    assert detector.end_of_turn(now) is None
    # Then they stop; with no new signal the silence fallback ends the turn.
    last_voice = detector.last_voice_at
    now = _frames(detector, "." * ONSET_WINDOW_FRAMES, now)
    assert detector.end_of_turn(last_voice + END_SILENCE_MS / 1000 - 0.01) is None
    assert detector.end_of_turn(last_voice + END_SILENCE_MS / 1000 + 0.01) == _turn(
        "so I was", "silence"
    )


def test_speech_awaits_its_words_until_the_transcriber_answers_or_for_a_bounded_time() -> None:
    detector = TurnDetector()
    assert not detector.awaiting_words(T0)
    now = _frames(detector, "x" * 40 + "." * ONSET_WINDOW_FRAMES, T0)
    # The caller spoke and stopped; a slow transcriber has said nothing yet.
    assert not detector.speaking and not detector.has_words
    assert detector.awaiting_words(now + 5)
    # Its answer (words or none) ends the wait.
    detector.on_transcriber(Transcript("That's all. Goodbye.", final=True, end_of_turn=True), now)
    assert not detector.awaiting_words(now)
    assert detector.end_of_turn(now) == _turn("That's all. Goodbye.", "transcriber")
    now = _frames(detector, "x" * 20 + "." * ONSET_WINDOW_FRAMES, now)
    detector.on_transcriber(UtteranceEnd(), now)
    assert not detector.awaiting_words(now)
    # A transcriber that never answers some speech holds the wait for a bounded time only.
    now = _frames(detector, "x" * 20 + "." * ONSET_WINDOW_FRAMES, now)
    last_voice = detector.last_voice_at
    assert detector.awaiting_words(last_voice + AWAIT_WORDS_SECONDS - 0.1)
    assert not detector.awaiting_words(last_voice + AWAIT_WORDS_SECONDS + 0.1)


def test_silence_fallback_after_final_text() -> None:
    detector = TurnDetector()
    now = _frames(detector, "x" * 15, T0)
    last_voice = now - FRAME
    detector.on_transcriber(Transcript("call me tomorrow", final=True), now)
    now = _frames(detector, "." * ONSET_WINDOW_FRAMES, now)
    assert not detector.speaking
    assert detector.end_of_turn(last_voice + END_SILENCE_MS / 1000 - 0.02) is None
    assert detector.end_of_turn(last_voice + END_SILENCE_MS / 1000 + 0.001) == _turn(
        "call me tomorrow", "silence"
    )


def test_stuck_fallback_with_interim_text_only() -> None:
    detector = TurnDetector()
    now = _frames(detector, "x" * 15, T0)
    last_voice = now - FRAME
    detector.on_transcriber(Transcript("maybe next", final=False), now)
    _frames(detector, "." * ONSET_WINDOW_FRAMES, now)
    # Interim text does not end a turn at the ordinary silence ...
    assert detector.end_of_turn(last_voice + END_SILENCE_MS / 1000 + 0.1) is None
    # ... only once the transcriber has been stuck for longer (since the interim, which came a
    # frame after the voice).
    assert detector.end_of_turn(now + STUCK_SILENCE_MS / 1000 - 0.01) is None
    assert detector.end_of_turn(now + STUCK_SILENCE_MS / 1000 + 0.001) == _turn(
        "maybe next", "stuck"
    )


def test_an_interim_that_comes_late_waits_for_its_final() -> None:
    detector = TurnDetector()
    _frames(detector, "x" * 15 + "." * ONSET_WINDOW_FRAMES, T0)
    # A transcriber behind the audio: its interim comes long after the caller stopped.
    late = detector.last_voice_at + 3 * STUCK_SILENCE_MS / 1000
    detector.on_transcriber(Transcript("Hello, I would like", final=False), late)
    assert detector.end_of_turn(late) is None  # not a turn of its own at once
    detector.on_transcriber(Transcript("Hello, I would like a table.", True, True), late + 1)
    assert detector.end_of_turn(late + 1) == _turn("Hello, I would like a table.", "transcriber")


def test_text_is_the_finals_plus_the_interim_and_the_detector_resets() -> None:
    detector = TurnDetector()
    now = _frames(detector, "x" * 30, T0)
    detector.on_transcriber(Transcript("I'd like", final=True), now)
    detector.on_transcriber(Transcript("  to book ", final=True), now)
    detector.on_transcriber(Transcript("", final=True), now)  # empty finals add nothing
    detector.on_transcriber(Transcript("a tab", final=False), now)
    detector.on_transcriber(Transcript("a table", final=False), now)
    _frames(detector, "." * ONSET_WINDOW_FRAMES, now)
    later = now + STUCK_SILENCE_MS / 1000 + 0.01  # since the last interim
    assert detector.end_of_turn(later) == _turn("I'd like to book a table", "stuck")
    # Reset: the same turn is not given twice, and the next one starts empty.
    assert not detector.has_words
    assert detector.end_of_turn(later + 5) is None
    now = _frames(detector, "x" * 15, later + 6)
    detector.on_transcriber(Transcript("thanks", final=True, end_of_turn=True), now)
    assert detector.end_of_turn(now) == _turn("thanks", "transcriber")


def test_new_words_after_a_signal_cancel_it() -> None:
    detector = TurnDetector()
    now = _frames(detector, "x" * 15, T0)
    detector.on_transcriber(Transcript("wait", final=True, end_of_turn=True), now)
    detector.on_transcriber(Transcript("let me", final=False), now + 0.01)
    assert detector.end_of_turn(now + 0.02) is None


def _turn(text: str, ended_by: str) -> TurnText:
    return TurnText(text, ended_by)


SAMPLE_RATE = audio.SAMPLE_RATE


def _speech_like(seconds: float, amplitude: float = 9000) -> bytes:
    """A voiced vowel-like sound: a wavering 140 Hz fundamental with falling harmonics, its
    loudness moving at a syllable rate."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 140 * (1 + 0.05 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    signal = sum(np.sin(k * phase) / k for k in range(1, 12))
    signal = signal * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    signal = signal / np.max(np.abs(signal)) * amplitude
    return audio.pcm16_to_mulaw(signal.astype("<i2").tobytes(), SAMPLE_RATE)


def test_voice_activity_silence_speech_and_faint_noise() -> None:
    vad = VoiceActivity()
    assert not any(vad.is_speech(frame) for frame in audio.frames(audio.silence(0.5)))
    speech = audio.frames(_speech_like(1.0))
    voiced = sum(vad.is_speech(frame) for frame in speech)
    assert voiced >= 0.8 * len(speech)
    noise = np.random.default_rng(7).normal(0, 60, SAMPLE_RATE).astype("<i2").tobytes()
    faint = audio.frames(audio.pcm16_to_mulaw(noise, SAMPLE_RATE))
    assert not any(vad.is_speech(frame) for frame in faint)
    # The same vowel, too faint to be the caller, is gated out by energy.
    quiet = audio.frames(_speech_like(0.5, amplitude=150))
    assert not any(vad.is_speech(frame) for frame in quiet)


# =========================================================================== playout


class Carrier:
    """The recording `send`: every message with the fake time it was sent at."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self.marks = asyncio.Event()

    async def send(self, message: str) -> None:
        decoded = json.loads(message)
        assert decoded["streamSid"] == SID
        self.sent.append((self.time.now, decoded))
        if decoded["event"] == "mark":
            self.marks.set()

    def events(self) -> list[str]:
        return [
            m["event"] if m["event"] != "mark" else f"mark:{m['mark']['name']}"
            for _, m in self.sent
        ]

    def payloads(self) -> list[bytes]:
        return [
            base64.b64decode(m["media"]["payload"]) for _, m in self.sent if m["event"] == "media"
        ]


def _audio(frames: int, first: int = 0) -> bytes:
    """Frames whose bytes say which frame they are (frame i is filled with byte i)."""
    return b"".join(bytes([(first + i) % 256]) * audio.FRAME_BYTES for i in range(frames))


class PlayoutRig:
    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.start = time.now
        self.carrier = Carrier(time)
        self.played: list[tuple[float, float, bytes]] = []  # (sent at, due, frame)
        self.playout = Playout(
            self.carrier.send,
            SID,
            started_at=self.start,
            on_frame=lambda due, frame: self.played.append((time.now, due, frame)),
            clock=time,
        )
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PlayoutRig:
        self.task = asyncio.create_task(self.playout.run())
        await self.time.settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        assert not self.task.done(), "the pacer must run until cancelled"
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    def segment(self, text: str, frames: int, first: int = 0) -> Segment:
        segment = self.playout.new_segment(text)
        self.playout.add_audio(segment, _audio(frames, first))
        self.playout.finish_segment(segment)
        return segment


def test_playout_paces_frames_never_more_than_lead_ahead(fake_time: FakeTime) -> None:
    async def scenario() -> None:
        async with PlayoutRig(fake_time) as rig:
            segment = rig.playout.new_segment("one two three")
            # Audio arrives in odd-sized chunks; frames are whole 160-byte frames in order.
            data = _audio(50)
            for cut in range(0, len(data), 333):
                rig.playout.add_audio(segment, data[cut : cut + 333])
            rig.playout.finish_segment(segment)
            await fake_time.settle()
            # At once: only what may play within LEAD.
            assert 1 <= len(rig.played) <= round(LEAD / FRAME_SECONDS) + 1
            assert rig.playout.speaking
            while fake_time.now < rig.start + 1.3:
                await fake_time.advance(0.005)
                elapsed = fake_time.now - rig.start
                assert len(rig.played) <= (elapsed + LEAD) / FRAME_SECONDS + 1 + EPS
            assert len(rig.played) == 50
            for index, (sent_at, due, _frame) in enumerate(rig.played):
                assert due == pytest.approx(index * FRAME_SECONDS)  # back to back from the start
                ahead = rig.start + due - sent_at
                assert -EPS <= ahead <= LEAD + EPS
            assert rig.carrier.payloads() == audio.frames(data)
            assert [frame for _, _, frame in rig.played] == audio.frames(data)
            assert rig.carrier.events() == ["media"] * 50 + ["mark:seg-1"]
            # The mark goes out right after the last frame, not when it has played.
            assert rig.carrier.sent[-1][0] == pytest.approx(rig.played[-1][0])
            assert rig.playout.lateness.frames == 50
            assert rig.playout.lateness.worst == 0.0
            assert segment.marked and not segment.played
            assert not rig.playout.idle.is_set()
            assert rig.playout.playing_until == pytest.approx(rig.start + 1.0)

    run(scenario())


def test_playout_marks_each_segment_and_echoes_make_it_idle(fake_time: FakeTime) -> None:
    async def scenario() -> None:
        async with PlayoutRig(fake_time) as rig:
            first = rig.segment("Hello there.", 10)
            partial = rig.playout.new_segment("How are you?")
            rig.playout.add_audio(partial, _audio(12, first=10)[:-20])  # not a whole frame
            await fake_time.advance(0.5)
            # The first segment is marked; the second is still arriving, so is not.
            assert rig.carrier.events() == ["media"] * 10 + ["mark:seg-1"] + ["media"] * 11
            rig.playout.add_audio(partial, b"\x42" * 20)
            rig.playout.finish_segment(partial)
            await fake_time.advance(0.5)
            assert rig.carrier.events() == (
                ["media"] * 10 + ["mark:seg-1"] + ["media"] * 12 + ["mark:seg-2"]
            )
            last = rig.carrier.payloads()[-1]
            assert last == bytes([21]) * 140 + b"\x42" * 20
            assert not rig.playout.idle.is_set()
            assert rig.playout.on_mark("seg-1") is first
            assert first.played and not rig.playout.idle.is_set()
            assert rig.playout.on_mark("nonsense") is None
            assert rig.playout.on_mark("seg-99") is None
            assert rig.playout.on_mark("seg-2") is partial
            assert partial.played and rig.playout.idle.is_set()
            assert first.heard_text(fake_time.now) == "Hello there."
            # An empty piece needs no mark: it counts as played at once.
            empty = rig.playout.new_segment("...")
            rig.playout.finish_segment(empty)
            await fake_time.advance(0.1)
            assert empty.played and rig.playout.idle.is_set()
            assert rig.carrier.events()[-1] == "mark:seg-2"

    run(scenario())


def test_playout_mark_directly_follows_its_segments_audio(fake_time: FakeTime) -> None:
    async def scenario() -> None:
        async with PlayoutRig(fake_time) as rig:
            rig.segment("Sure.", 2)
            rig.segment("Let me check that for you.", 10, first=2)
            await fake_time.advance(0.5)
            assert rig.carrier.events() == (
                ["media"] * 2 + ["mark:seg-1"] + ["media"] * 10 + ["mark:seg-2"]
            )

    run(scenario())


def test_playout_clear_drops_queued_audio_and_reports_cut_segments(fake_time: FakeTime) -> None:
    async def scenario() -> None:
        async with PlayoutRig(fake_time) as rig:
            done = rig.segment("Welcome.", 10)
            await fake_time.advance(0.3)
            assert rig.playout.on_mark("seg-1") is done
            speaking = rig.segment(" ".join(f"w{i}" for i in range(10)), 50, first=10)
            waiting = rig.segment("And another thing.", 20, first=60)
            await fake_time.advance(0.5)
            sent_before = len(rig.played)
            at = fake_time.now
            cut = await rig.playout.clear()
            assert cut == [speaking]  # not the played one, not the one that never started
            assert rig.carrier.sent[-1] == (at, {"event": "clear", "streamSid": SID})
            assert speaking.cleared and waiting.cleared and not done.cleared
            assert speaking.dues and all(due < at for due in speaking.dues)
            assert waiting.dues == [] and waiting.heard_text(at) == ""
            assert rig.playout.idle.is_set()
            assert not rig.playout.speaking
            # Nothing queued before the clear goes out after it, and late audio is dropped.
            rig.playout.add_audio(speaking, _audio(5))
            rig.playout.finish_segment(speaking)
            await fake_time.advance(1.0)
            assert len(rig.played) == sent_before
            assert rig.carrier.events()[-1] == "clear"
            # The carrier echoes the cleared mark: that is not "played".
            rig.playout.on_mark(f"seg-{speaking.id}")
            assert not speaking.played
            # The next reply starts playing now, not where the cleared audio would have ended.
            after = rig.segment("Go ahead.", 3, first=100)
            await fake_time.settle()
            assert after.dues[0] == pytest.approx(fake_time.now)
            assert rig.carrier.payloads()[-1] == bytes([102]) * audio.FRAME_BYTES

    run(scenario())


def test_playout_a_piece_cut_while_it_still_arrives_leaves_the_playout_idle(
    fake_time: FakeTime,
) -> None:
    async def scenario() -> None:
        async with PlayoutRig(fake_time) as rig:
            arriving = rig.playout.new_segment("Hello and welcome to Acme.")
            rig.playout.add_audio(arriving, _audio(10))
            await fake_time.advance(0.1)
            await rig.playout.clear()  # the caller spoke over it
            assert rig.playout.idle.is_set()
            # The voice delivers the rest of the piece: nothing of it is left to wait for.
            rig.playout.add_audio(arriving, _audio(10, first=10))
            rig.playout.finish_segment(arriving)
            await fake_time.advance(0.5)
            assert rig.playout.idle.is_set()

    run(scenario())


def test_playout_clear_heard_text_is_in_proportion_to_the_audio_played(
    fake_time: FakeTime,
) -> None:
    async def scenario() -> None:
        async with PlayoutRig(fake_time) as rig:
            words = [f"w{i}" for i in range(10)]
            segment = rig.segment(" ".join(words), 50)  # one second, ten words
            await fake_time.advance(0.5)  # half of it due
            at = fake_time.now
            cut = await rig.playout.clear()
            assert cut == [segment]
            assert segment.heard_text(at) == " ".join(words[:5])

    run(scenario())


def test_playout_measures_lateness_when_the_pacer_stalls(fake_time: FakeTime) -> None:
    async def scenario() -> None:
        async with PlayoutRig(fake_time) as rig:
            rig.segment("a long sentence", 50)
            await fake_time.advance(0.3)
            assert rig.playout.lateness.worst == 0.0
            await fake_time.stall(0.2)  # the loop did not wake for 200 ms
            await fake_time.advance(0.2)
            assert rig.playout.lateness.late_over_40ms >= 1
            assert rig.playout.lateness.worst >= 0.1

    run(scenario())


def test_segment_heard_text_by_time() -> None:
    segment = Segment(1, "one two three four", dues=[10.0 + i * FRAME_SECONDS for i in range(8)])
    assert segment.heard_text(10.0) == ""
    assert segment.heard_text(10.0 + 4 * FRAME_SECONDS) == "one two"
    assert segment.heard_text(11.0) == "one two three four"
    assert segment.end_due == pytest.approx(10.16)
    segment.played = True
    assert segment.heard_text(0.0) == "one two three four"


# =========================================================================== transcript


def test_chat_history_maps_roles_tool_calls_and_results() -> None:
    log = TranscriptLog()
    call = ToolCall("call_1", "check_availability", {"day": "friday"})
    log.system("call connected", 0.0)
    log.assistant("Hi, this is Ava.", 0.1, 1.2)
    log.user("Is Friday free?", 1.5, 2.4)
    log.assistant("", 2.6, 2.6, tool_calls=[call])
    log.tool(call, '{"free": ["09:00"]}', 2.6, 2.9)
    log.assistant("Friday at nine is free, shall I", 3.0, 4.1, interrupted=True)
    log.user("yes book it", 4.0, 4.8)
    log.assistant("", 5.0, 5.0)  # nothing said: not logged
    history = log.chat_history()
    assert [(m.role, m.text) for m in history] == [
        ("assistant", "Hi, this is Ava."),
        ("user", "Is Friday free?"),
        ("assistant", ""),
        ("tool", '{"free": ["09:00"]}'),
        ("assistant", "Friday at nine is free, shall I —"),
        ("user", "yes book it"),
    ]
    assert history[2].tool_calls == (call,)
    assert history[3].tool_call_id == "call_1" and history[3].name == "check_availability"
    assert history[0].tool_calls == () and history[0].tool_call_id is None
    # The stored transcript keeps the system note and the interruption, without the dash.
    assert [m.role for m in log.messages] == [
        "system",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    interrupted = log.messages[5]
    assert interrupted.interrupted and interrupted.text == "Friday at nine is free, shall I"
    assert log.messages[3].tool_calls is not None
    assert log.messages[3].tool_calls[0].arguments == {"day": "friday"}
    assert (log.messages[2].start_ms, log.messages[2].end_ms) == (1500, 2400)
    assert log.end_ms == 4800


def test_interrupted_before_any_word_gets_no_dash() -> None:
    log = TranscriptLog()
    log.assistant("", 1.0, 1.1, interrupted=True)
    assert log.messages[0].interrupted
    assert log.chat_history()[0].text == ""


def test_resumed_call_continues_its_transcript_with_an_offset() -> None:
    earlier = [
        TranscriptMessage(role="user", text="put me through", start_ms=1000, end_ms=2000),
        TranscriptMessage(role="assistant", text="Transferring you.", start_ms=2100, end_ms=3000),
    ]
    log = TranscriptLog(earlier, offset_ms=45_000)
    assert log.end_ms == 3000
    log.user("hello?", 0.25, 1.0)
    assert (log.messages[-1].start_ms, log.messages[-1].end_ms) == (45_250, 46_000)
    assert log.end_ms == 46_000
    assert [m.text for m in log.chat_history()] == [
        "put me through",
        "Transferring you.",
        "hello?",
    ]
    assert earlier[-1].text == "Transferring you." and len(earlier) == 2  # not modified
    assert TranscriptLog(offset_ms=7000).end_ms == 7000


# =========================================================================== recording


def _tone(frames: int, amplitude: int = 12000) -> bytes:
    t = np.arange(frames * audio.FRAME_BYTES) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * 440 * t) * amplitude).astype("<i2").tobytes()
    return audio.pcm16_to_mulaw(pcm, SAMPLE_RATE)


def _channels(wav_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return samples[0::2], samples[1::2]


def test_recording_places_caller_left_and_assistant_right_on_one_timeline() -> None:
    recorder = StereoRecorder()
    frame = _tone(1)
    recorder.caller(0, frame)
    recorder.caller(100, frame)  # 100 ms: after a gap the carrier did not fill
    recorder.assistant(0.2, _tone(5))  # 200..300 ms
    recorder.assistant(0.3, _tone(5))  # 300..400 ms
    recorder.erase_assistant_after(0.36)  # cleared before it played
    assert recorder.seconds == pytest.approx(0.36)
    left, right = _channels(recorder.wav())
    assert len(left) == len(right) == int(0.36 * SAMPLE_RATE)
    ms = SAMPLE_RATE // 1000

    def loud(channel: np.ndarray, start_ms: int, end_ms: int) -> bool:
        return bool(np.abs(channel[start_ms * ms : end_ms * ms]).max() > 5000)

    def silent(channel: np.ndarray, start_ms: int, end_ms: int) -> bool:
        part = channel[start_ms * ms : end_ms * ms]
        return bool(len(part) and np.abs(part).max() == 0)

    assert loud(left, 0, 20) and silent(left, 20, 100) and loud(left, 100, 120)
    assert silent(left, 120, 360)
    assert silent(right, 0, 200) and loud(right, 200, 360)
    expected_left = audio.mulaw_to_pcm16(frame)
    assert left[:160].tobytes() == expected_left


def test_recording_ignores_out_of_range_and_overwrites_in_place() -> None:
    recorder = StereoRecorder()
    recorder.assistant(-0.5, _tone(1))
    recorder.caller(-20, _tone(1))
    assert recorder.seconds == 0.0
    recorder.assistant(0.0, _tone(2))
    recorder.assistant(0.0, audio.SILENT_FRAME)  # the same moment written again
    recorder.erase_assistant_after(5.0)  # nothing after: nothing erased
    _left, right = _channels(recorder.wav())
    assert len(right) == 320
    assert np.abs(right[:160]).max() == 0 and np.abs(right[160:]).max() > 5000


# =========================================================================== metering


class Ledger:
    """The fake `charge`: records each draw; refuses once the balance would go below zero."""

    def __init__(self, balance: Decimal) -> None:
        self.balance = balance
        self.entries: list[tuple[str, Decimal, str, bool]] = []
        self.refused: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, account: str, amount: Decimal, key: str, allow_negative: bool) -> None:
        assert threading.current_thread() is not threading.main_thread(), "blocking: a thread"
        with self.lock:
            if not allow_negative and self.balance - amount < 0:
                self.refused.append(key)
                raise InsufficientCredits("not enough credits")
            self.balance -= amount
            self.entries.append((account, amount, key, allow_negative))


def _meter(time: FakeTime, ledger: Ledger, rate: str) -> Meter:
    return Meter(
        account_id="acct_1",
        call_id="call_9",
        stream_sid="MZ7",
        rate_per_minute=Decimal(rate),
        started_at=time.now,
        clock=time,
        charge=ledger,
    )


def test_meter_draws_each_increment_then_settles_by_the_second(fake_time: FakeTime) -> None:
    ledger = Ledger(Decimal(100))

    async def scenario() -> None:
        meter = _meter(fake_time, ledger, "6")  # 1 credit per 10 s block
        task = asyncio.create_task(meter.run())
        await fake_time.advance(9.99)
        assert ledger.entries == []
        await fake_time.advance_to(meter.started_at + 35)
        await until(lambda: len(ledger.entries) == 3)
        await fake_time.settle()
        assert fake_time.next_wake == pytest.approx(meter.started_at + 40)
        assert ledger.entries == [
            ("acct_1", Decimal("1.0000"), f"call:call_9:MZ7:usage:{n}", False) for n in range(3)
        ]
        assert meter.drawn == Decimal(3) and meter.blocks == 3
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        total = await meter.settle(meter.started_at + 37.2)  # 38 s by the whole second
        assert total == Decimal("3.8000")
        assert ledger.entries[-1] == ("acct_1", Decimal("0.8000"), "call:call_9:MZ7:settle", True)
        assert await meter.settle(meter.started_at + 99) == Decimal("3.8000")
        assert len(ledger.entries) == 4  # settled once
        assert not meter.exhausted.is_set()

    run(scenario())


def test_meter_stops_and_flags_exhausted_when_credits_run_out(fake_time: FakeTime) -> None:
    ledger = Ledger(Decimal("2.5"))

    async def scenario() -> None:
        meter = _meter(fake_time, ledger, "6")
        task = asyncio.create_task(meter.run())
        await fake_time.advance_to(meter.started_at + 30)
        await until(lambda: meter.exhausted.is_set())
        await asyncio.wait_for(task, 1)  # it returned by itself
        assert [key for _, _, key, _ in ledger.entries] == [
            "call:call_9:MZ7:usage:0",
            "call:call_9:MZ7:usage:1",
        ]
        assert ledger.refused == ["call:call_9:MZ7:usage:2"]
        assert meter.drawn == Decimal(2) and meter.blocks == 2
        # The goodbye after the refusal is settled, and may go below zero.
        assert await meter.settle(meter.started_at + 33.01) == Decimal("3.4000")
        assert ledger.entries[-1][1:] == (Decimal("1.4000"), "call:call_9:MZ7:settle", True)
        assert ledger.balance == Decimal("-0.9")

    run(scenario())


def test_meter_amounts_are_quantized(fake_time: FakeTime) -> None:
    ledger = Ledger(Decimal(100))

    async def scenario() -> None:
        meter = _meter(fake_time, ledger, "0.07")
        task = asyncio.create_task(meter.run())
        await fake_time.advance_to(meter.started_at + 25)
        await until(lambda: len(ledger.entries) == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # 0.07 * 10 / 60 = 0.011666… → 0.0117
        assert [amount for _, amount, _, _ in ledger.entries] == [Decimal("0.0117")] * 2
        # 25.3 s → 26 s: 0.030333… → 0.0303; 0.0234 drawn, the rest settled.
        assert await meter.settle(meter.started_at + 25.3) == Decimal("0.0303")
        settle = ledger.entries[-1]
        assert settle[1:3] == (Decimal("0.0069"), "call:call_9:MZ7:settle")
        for _, amount, _, _ in ledger.entries:
            assert amount.as_tuple().exponent == -4
        assert meter.charge_for(0) == Decimal("0.0000")
        assert meter.charge_for(0.001) == Decimal("0.0012")  # a started second counts

    run(scenario())


def test_settle_within_what_was_drawn_charges_nothing_more() -> None:
    ledger = Ledger(Decimal(100))

    async def scenario() -> None:
        time = FakeTime()
        meter = _meter(time, ledger, "6")
        meter.drawn, meter.blocks = Decimal(1), 1  # one block drawn
        assert await meter.settle(meter.started_at + 4.2) == Decimal(1)
        assert ledger.entries == []

    run(scenario())


# =========================================================================== context

NOW = datetime(2025, 7, 5, 2, 30, tzinfo=UTC)  # Friday evening in New York


def _context(*, contact: Contact | None, company: Company | None, **extra: Any) -> CallContext:
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    assistant = AssistantRecord(
        id="asst_1",
        created_at=stamp,
        updated_at=stamp,
        name="Ava",
        system_prompt="You are Ava.",
        llm={"provider": "openai", "model": "gpt-4o-mini"},
        voice={"provider": "cartesia", "model": "sonic-2", "voice_id": "v1"},
        transcriber={"provider": "deepgram", "model": "nova-3", "language": "en"},
        telephony={"call_region": "us"},
    )
    call = CallRecord(
        id="call_1",
        direction="outbound",
        status="in_progress",
        assistant_id="asst_1",
        phone_number_id="pn_1",
        from_number="+14155550140",
        to_number="+12125550199",
        created_at=stamp,
    )
    return CallContext(
        account_id="acct_1",
        account_name="Bright Smile",
        call=call,
        assistant=assistant,
        contact=contact,
        company=company,
        # As load_context does: the contact's timezone, else the account's default.
        timezone=(contact.timezone if contact and contact.timezone else "UTC"),
        **extra,
    )


def _contact(**changes: Any) -> Contact:
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    fields: dict[str, Any] = {
        "id": "ct_1",
        "first_name": "Dana",
        "last_name": "Reyes",
        "email": "dana@example.com",
        "phone": "+12125550199",
        "timezone": "America/New_York",
        "custom": {"budget": 1200, "vip": True, "interests": ["whitening", "braces"]},
        "created_at": stamp,
        "updated_at": stamp,
    }
    fields.update(changes)
    return Contact(**fields)


def _company() -> Company:
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    return Company(
        id="co_1",
        name="Reyes Logistics",
        industry="Freight",
        custom={"tier": "gold"},
        created_at=stamp,
        updated_at=stamp,
    )


def test_render_fills_every_kind_of_variable() -> None:
    context = _context(contact=_contact(), company=_company(), campaign_name="Summer recall")
    context.fill_variables(now=NOW)
    text = (
        "Hi {{contact.first_name}} ({{ contact.full_name }}) of {{company.name}}, "
        "{{company.industry}} / {{company.custom.tier}}. Budget {{contact.custom.budget}}, "
        "VIP: {{contact.custom.vip}}, likes {{contact.custom.interests}}. "
        "Campaign {{campaign.name}} by {{account.name}}. Call {{call.direction}} from "
        "{{call.from}} to {{call.to}} on {{call.date}} at {{call.time}}. "
        "Status {{contact.lead_status}}."
    )
    assert context.render(text) == (
        "Hi Dana (Dana Reyes) of Reyes Logistics, Freight / gold. Budget 1200, VIP: yes, likes "
        "whitening, braces. Campaign Summer recall by Bright Smile. Call outbound from "
        "+14155550140 to +12125550199 on Friday, 04 July 2025 at 22:30 EDT. Status "
        f"{_contact().lead_status}."
    )


def test_render_unknown_and_empty_variables_leave_no_gaps() -> None:
    context = _context(contact=None, company=None)
    context.fill_variables(now=NOW)
    rendered = context.render(
        "Hello {{contact.first_name}}, I call about {{contact.custom.budget}} {{nope.never}} "
        "for {{company.name}}. {{campaign.name}}"
    )
    assert rendered == "Hello, I call about for."
    assert "{" not in rendered and "  " not in rendered and "Hello ," not in rendered
    assert context.render("{{contact.full_name}}") == ""
    assert context.render("Say {{call.time}}!") == "Say 02:30 UTC!"


def test_fill_variables_uses_the_contacts_timezone_for_date_and_time() -> None:
    tokyo = _context(contact=_contact(timezone="Asia/Tokyo"), company=None)
    tokyo.fill_variables(now=NOW)
    assert tokyo.variables["call.date"] == "Saturday, 05 July 2025"
    assert tokyo.variables["call.time"] == "11:30 JST"
    new_york = _context(contact=_contact(), company=None)
    new_york.fill_variables(now=NOW)
    assert new_york.variables["call.date"] == "Friday, 04 July 2025"
    assert new_york.variables["call.time"] == "22:30 EDT"
    # An unknown zone falls back to UTC rather than failing the call.
    broken = _context(contact=_contact(timezone="Mars/Olympus_Mons"), company=None)
    broken.fill_variables(now=NOW)
    assert broken.variables["call.time"] == "02:30 UTC"


# =========================================================================== audio


def test_frames_are_160_bytes_and_the_last_is_padded_with_silence() -> None:
    data = bytes(range(200)) * 2  # 400 bytes: two whole frames and 80 bytes
    frames = audio.frames(data)
    assert [len(f) for f in frames] == [160, 160, 160]
    assert b"".join(frames)[:400] == data
    assert frames[-1][80:] == bytes([audio.SILENCE_BYTE]) * 80
    assert audio.frames(b"") == []
    assert audio.silence(0.02) == audio.SILENT_FRAME
    assert audio.rms(audio.SILENT_FRAME) == 0 and audio.is_silent(audio.SILENT_FRAME)
    assert audio.seconds_of(bytes(4000)) == 0.5


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100])
def test_streaming_conversion_matches_one_shot_whatever_the_chunking(rate: int) -> None:
    t = np.arange(rate // 2) / rate
    pcm = (np.sin(2 * np.pi * 300 * t) * 9000).astype("<i2").tobytes()
    whole = audio.pcm16_to_mulaw(pcm, rate)
    assert len(whole) == pytest.approx(SAMPLE_RATE // 2, abs=2)
    converter = audio.PcmToMulaw(rate)
    cuts = [0, 1, 7, 1001, 1002, 5555, len(pcm)]  # odd cuts split samples in two
    streamed = b"".join(converter.convert(pcm[a:b]) for a, b in itertools.pairwise(cuts))
    assert streamed == whole
    assert converter.convert(b"") == b""


def test_mulaw_to_pcm16_round_trip_and_resampling() -> None:
    tone = _tone(10)
    pcm = audio.mulaw_to_pcm16(tone)
    assert len(pcm) == 2 * len(tone)
    assert audio.pcm16_to_mulaw(pcm, SAMPLE_RATE) == tone
    assert len(audio.mulaw_to_pcm16(tone, 16000)) == pytest.approx(4 * len(tone), abs=4)
    stereo = audio.interleave_stereo(b"\x01\x00\x02\x00", b"\x03\x00")
    assert stereo == b"\x01\x00\x03\x00\x02\x00\x00\x00"
    assert audio.to_mono(stereo) == b"\x02\x00\x01\x00"
