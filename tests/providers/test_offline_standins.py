"""The offline stand-ins of the local platform: the pocketsphinx transcriber, the espeak-ng voice
and the development model, each run for real (no fakes: they are local engines)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import stat
from collections.abc import AsyncIterator, Awaitable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import pytest

from talkturo.audio import FRAME_BYTES, SAMPLE_RATE, frames, is_silent, rms, silence
from talkturo.simcaller.audio import speak, synthetic_speech
from talkturo.voice.providers import registry
from talkturo.voice.providers.base import (
    ChatMessage,
    ChatRequest,
    Finished,
    ProviderError,
    SpeechStarted,
    SttEvent,
    TextDelta,
    ToolCall,
    ToolSpec,
    TranscriberOptions,
    Transcript,
    UtteranceEnd,
    VoiceOptions,
)
from talkturo.voice.providers.llm import dev
from talkturo.voice.providers.llm.dev import LABEL, DevelopmentModel
from talkturo.voice.providers.stt import offline as stt_offline
from talkturo.voice.providers.stt.offline import PocketsphinxStream, PocketsphinxTranscriber
from talkturo.voice.providers.stt.segments import SegmentedStream
from talkturo.voice.providers.tts import offline as tts_offline
from talkturo.voice.providers.tts.offline import EspeakSynthesizer, espeak_rate, espeak_voice
from talkturo.voice.toolbox import OPT_OUT_SPEC

T = TypeVar("T")
ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(
    not ESPEAK, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)
OPTIONS = TranscriberOptions(model="offline", language="en-US")
TIMEOUT = 20.0


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, TIMEOUT)

    return asyncio.run(bounded())


# =========================================================================== transcriber
class Collector:
    """Consumes a stream's events as they come. When `drained()` returns, the collector has
    already seen every event queued so far: the worker queues an event (waking this task)
    before it marks the work done (waking the one awaiting `drained()`), and asyncio runs
    wake-ups in order."""

    def __init__(self, stream: SegmentedStream) -> None:
        self.events: list[SttEvent] = []
        self.error: ProviderError | None = None
        self.task = asyncio.create_task(self._collect(stream))

    async def _collect(self, stream: SegmentedStream) -> None:
        try:
            async for event in stream.events():
                self.events.append(event)
        except ProviderError as error:
            self.error = error

    def finals(self) -> list[Transcript]:
        return [e for e in self.events if isinstance(e, Transcript) and e.final]

    def interims(self) -> list[Transcript]:
        return [e for e in self.events if isinstance(e, Transcript) and not e.final]


def without_trailing_silence(audio: bytes) -> bytes:
    """espeak-ng ends a line with ~300 ms of silence; the tests add their own."""
    kept = frames(audio)
    while kept and is_silent(kept[-1]):
        kept.pop()
    return b"".join(kept)


async def send_frames(stream: SegmentedStream, audio: bytes) -> None:
    for start in range(0, len(audio), FRAME_BYTES):
        await stream.send(audio[start : start + FRAME_BYTES])


@needs_espeak
def test_pocketsphinx_recognises_espeak_speech_through_the_phone_path() -> None:
    speech = speak("I would like to book an appointment for tomorrow", engine="espeak-ng")
    spoken = without_trailing_silence(speech.audio)

    async def scenario() -> list[SttEvent]:
        stream = await PocketsphinxTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(0.4) + spoken)
        await stream.drained()
        # Speech has started; nothing is final while the caller is still talking
        assert isinstance(seen.events[0], SpeechStarted)
        assert seen.finals() == []

        # 300 ms of silence: a pause, not yet the end of the turn
        await send_frames(stream, silence(0.3))
        await stream.drained()
        assert seen.finals() == []

        # 400 ms more (700 ms in all): the turn ends with the recognised text
        await send_frames(stream, silence(0.4))
        await stream.drained()
        finals = seen.finals()
        assert len(finals) == 1
        assert finals[0].end_of_turn

        await stream.close()
        await seen.task
        assert seen.error is None
        return seen.events

    events = run(scenario())
    final = next(e for e in events if isinstance(e, Transcript) and e.final)
    words = final.text.split()
    assert "appointment" in words and "tomorrow" in words, final.text
    assert events.index(SpeechStarted()) < events.index(final)
    assert events.count(SpeechStarted()) == 1
    # interim transcripts, if any, come between the start and the final
    for event in events[1 : events.index(final)]:
        assert isinstance(event, Transcript) and not event.final


@needs_espeak
def test_each_utterance_of_a_call_gets_its_own_turn() -> None:
    first = speak("hello world", engine="espeak-ng").audio
    second = speak("can you help me", engine="espeak-ng").audio

    async def scenario() -> list[SttEvent]:
        stream = await PocketsphinxTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(0.3) + first + silence(1.0) + second + silence(1.0))
        await stream.close()
        await seen.task
        return seen.events

    events = [e for e in run(scenario()) if not (isinstance(e, Transcript) and not e.final)]
    assert [type(e) for e in events] == [SpeechStarted, Transcript, SpeechStarted, Transcript]
    assert "hello" in events[1].text
    assert "help" in events[3].text
    assert all(e.end_of_turn for e in events if isinstance(e, Transcript))


def test_silence_and_line_hiss_give_no_events() -> None:
    # A faint deterministic hiss (RMS far below speech) on top of digital silence
    hiss = bytes(0xFE if i % 7 < 3 else 0x7E for i in range(SAMPLE_RATE * 2))
    assert rms(hiss[:FRAME_BYTES]) < 100

    async def scenario() -> list[SttEvent]:
        stream = await PocketsphinxTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(2.0) + hiss)
        await stream.drained()
        await stream.close()
        await stream.close()  # twice is fine
        await stream.send(silence(0.1))  # after close: ignored
        await seen.task
        return seen.events

    assert run(scenario()) == []


@needs_espeak
def test_close_mid_utterance_flushes_the_final_and_the_decoder_is_pooled() -> None:
    speech = speak("hello world", engine="espeak-ng").audio

    async def scenario() -> tuple[list[SttEvent], bool]:
        transcriber = PocketsphinxTranscriber()
        stream = await transcriber.open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(0.2) + speech)  # no trailing silence: still talking
        await stream.close()
        await seen.task
        again = await transcriber.open(OPTIONS)
        reused = again._decoder is stream._decoder
        await again.close()
        return seen.events, reused

    events, reused = run(scenario())
    assert events[0] == SpeechStarted()
    assert isinstance(events[-1], Transcript) and events[-1].final and events[-1].end_of_turn
    assert "hello" in events[-1].text
    assert reused


def test_a_noise_burst_without_words_ends_with_an_utterance_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # When the decoder recognises nothing in a segment, the turn ends without text
    monkeypatch.setattr(PocketsphinxStream, "_finish", lambda self: self._decoder.end_utt() or "")
    burst = synthetic_speech("mm")

    async def scenario() -> list[SttEvent]:
        stream = await PocketsphinxTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(0.2) + burst + silence(0.8))
        await stream.close()
        await seen.task
        return [e for e in seen.events if not isinstance(e, Transcript)]

    assert run(scenario()) == [SpeechStarted(), UtteranceEnd()]


def test_a_decoder_failure_is_a_provider_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: PocketsphinxStream, mulaw: bytes) -> str:
        raise RuntimeError("process_raw failed")

    monkeypatch.setattr(PocketsphinxStream, "_process", broken)

    async def scenario() -> ProviderError | None:
        stream = await PocketsphinxTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(0.2) + synthetic_speech("hello there"))
        await seen.task
        await stream.close()
        return seen.error

    error = run(scenario())
    assert error is not None and error.provider == "pocketsphinx" and not error.retryable


# =========================================================================== espeak-ng voice
class RecordedProcesses:
    """Wraps asyncio.create_subprocess_exec to keep the processes and their arguments."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.processes: list[asyncio.subprocess.Process] = []
        real = asyncio.create_subprocess_exec

        async def recording(*args: str, **kwargs: Any) -> asyncio.subprocess.Process:
            assert "shell" not in kwargs
            process = await real(*args, **kwargs)
            self.calls.append(args)
            self.processes.append(process)
            return process

        monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


def test_voice_and_rate_from_the_options() -> None:
    assert espeak_voice("en") == "en-us"
    assert espeak_voice("en-US") == "en-us"
    assert espeak_voice("en-GB") == "en-gb"
    assert espeak_voice("de") == "de"
    assert espeak_voice("de-DE") == "de"
    assert espeak_voice("es") == "es"
    assert espeak_voice("fr-CA") == "fr"
    assert espeak_voice("ar") == "ar"
    assert espeak_voice("xx-YY") == "en-us"
    assert espeak_voice(None) == "en-us"
    assert espeak_rate(1.0) == 175
    assert espeak_rate(1.2) == 210
    assert espeak_rate(0.1) == 80 and espeak_rate(10) == 450


@needs_espeak
def test_espeak_streams_phone_audio_in_several_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = RecordedProcesses(monkeypatch)
    text = "--help Thank you for calling. How can I help you today?"
    voice = EspeakSynthesizer(VoiceOptions(model="", voice_id="", speed=1.0, language="en-US"))

    chunks = run(collect(voice.synthesize(text)))

    args = recorded.calls[0]
    assert Path(args[0]).name == "espeak-ng"
    assert args[1:] == ("-v", "en-us", "-s", "175", "--stdout", "--", text)
    assert recorded.processes[0].returncode == 0
    audio = b"".join(chunks)
    assert len(chunks) >= 4
    # plausible duration: what the same engine gives for the line, within 15 %
    reference = speak(text, engine="espeak-ng").seconds
    assert 1.5 < len(audio) / SAMPLE_RATE < 8.0
    assert abs(len(audio) / SAMPLE_RATE - reference) < 0.15 * reference
    assert max(rms(audio[i : i + 160]) for i in range(0, len(audio), 160)) > 1000  # speech


@needs_espeak
def test_espeak_speed_and_language_change_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = RecordedProcesses(monkeypatch)
    slow = EspeakSynthesizer(VoiceOptions(model="", voice_id="", speed=0.8, language="de"))
    fast = EspeakSynthesizer(VoiceOptions(model="", voice_id="", speed=1.6, language="de"))

    slow_audio = b"".join(run(collect(slow.synthesize("Guten Tag, wie geht es Ihnen?"))))
    fast_audio = b"".join(run(collect(fast.synthesize("Guten Tag, wie geht es Ihnen?"))))

    assert recorded.calls[0][1:5] == ("-v", "de", "-s", "140")
    assert recorded.calls[1][1:5] == ("-v", "de", "-s", "280")
    assert len(fast_audio) < 0.75 * len(slow_audio)


@needs_espeak
def test_stopping_the_iteration_kills_espeak(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = RecordedProcesses(monkeypatch)
    # About a minute of speech: espeak-ng blocks on the full pipe long before it is done.
    text = " ".join(f"This is sentence number {n} of a long announcement." for n in range(30))
    voice = EspeakSynthesizer(VoiceOptions(model="", voice_id="", language="en"))

    async def closed_early() -> int | None:
        chunks = voice.synthesize(text)
        assert await anext(chunks)
        await chunks.aclose()
        return recorded.processes[0].returncode

    async def cancelled() -> int:
        started = asyncio.Event()

        async def speaking() -> None:
            async for _chunk in voice.synthesize(text):
                started.set()
                await asyncio.Event().wait()  # playing out, until barged in

        task = asyncio.create_task(speaking())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        del task  # the generator is finalised (and closed) with it
        return await asyncio.wait_for(recorded.processes[1].wait(), 5)

    assert run(closed_early()) == -signal.SIGKILL
    assert run(cancelled()) == -signal.SIGKILL


def test_without_espeak_the_voice_falls_back_to_synthetic_speech(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[str] = []

    class Recorder:
        def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
            warnings.append(message)

    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    monkeypatch.setattr(tts_offline, "logger", Recorder())
    monkeypatch.setattr(tts_offline, "_fallback_logged", False)
    voice = EspeakSynthesizer(VoiceOptions(model="", voice_id=""))

    first = run(collect(voice.synthesize("Your order has shipped.")))
    second = run(collect(voice.synthesize("Goodbye.")))

    assert b"".join(first) == synthetic_speech("Your order has shipped.")
    assert b"".join(second) == synthetic_speech("Goodbye.")
    assert len(first) >= 3
    assert len(warnings) == 1 and "espeak-ng" in warnings[0]
    assert run(collect(voice.synthesize("   "))) == []


def _fake_espeak(tmp_path: Path, script: str) -> str:
    path = tmp_path / "espeak-ng"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("echo 'Error: voice not found' >&2\nexit 1\n", "voice not found"),
        ("printf 'not a wav file at all, sorry'\n", "no WAV audio"),
    ],
)
def test_espeak_failures_are_provider_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script: str, expected: str
) -> None:
    binary = _fake_espeak(tmp_path, script)
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: binary)
    voice = EspeakSynthesizer(VoiceOptions(model="", voice_id=""))

    with pytest.raises(ProviderError) as raised:
        run(collect(voice.synthesize("hello")))

    assert raised.value.provider == "espeak-ng"
    assert not raised.value.retryable
    assert expected in raised.value.message


# =========================================================================== development model
TODAY = date(2030, 1, 14)  # a Monday
SLOTS = ["2030-01-15T09:30-05:00", "2030-01-15T10:00-05:00", "2030-01-15T14:00-05:00"]

END_CALL = ToolSpec("end_call", "End the call.", {"type": "object", "properties": {}})
TRANSFER = ToolSpec(
    "transfer_call",
    "Transfer the caller to a person.",
    {
        "type": "object",
        "properties": {
            "destination": {"type": "string", "enum": ["Sales desk", "Support"]},
            "reason": {"type": "string"},
        },
        "required": ["destination"],
    },
)
CHECK = ToolSpec(
    "check_availability",
    "Find free meeting times.",
    {
        "type": "object",
        "properties": {
            "start_date": {"type": "string"},
            "end_date": {"type": "string"},
            "timezone": {"type": "string"},
        },
        "required": ["start_date"],
    },
)
BOOK = ToolSpec(
    "book_meeting",
    "Book the meeting.",
    {
        "type": "object",
        "properties": {
            "start": {"type": "string"},
            "name": {"type": "string"},
            "email": {"type": "string"},
            "timezone": {"type": "string"},
            "notes": {"type": "string"},
        },
        "required": ["start", "name", "email"],
    },
)
LOOKUP = ToolSpec(
    "lookup_order",
    "Look up the delivery status of an order by its number.",
    {
        "type": "object",
        "properties": {
            "order_number": {"type": "string"},
            "include_items": {"type": "boolean"},
            "limit": {"type": "integer"},
            "channel": {"type": "string", "enum": ["phone", "web"]},
            "comment": {"type": "string"},
        },
        "required": ["order_number", "include_items", "limit", "channel"],
    },
)
# As a session offers them: opt_out always comes along.
ALL_TOOLS = (END_CALL, TRANSFER, CHECK, BOOK, LOOKUP, OPT_OUT_SPEC)
LABELLED = ChatMessage("assistant", f"{LABEL} Hello, how can I help you?")


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def tool_result(name: str, result: Any, call_id: str = "call_1") -> list[ChatMessage]:
    return [
        ChatMessage("assistant", "", tool_calls=(ToolCall(call_id, name, {}),)),
        ChatMessage("tool", json.dumps(result), tool_call_id=call_id, name=name),
    ]


def ask(
    *messages: ChatMessage, tools: tuple[ToolSpec, ...] = ALL_TOOLS
) -> tuple[list[TextDelta], list[ToolCall], Finished]:
    model = DevelopmentModel(today=lambda: TODAY)
    request = ChatRequest(model="dev", system_prompt="Be helpful.", messages=messages, tools=tools)

    async def collect_events() -> list[Any]:
        return [event async for event in model.stream(request)]

    events = run(collect_events())
    assert isinstance(events[-1], Finished)
    assert all(not isinstance(e, Finished) for e in events[:-1])
    # text first, then tool calls
    kinds = [type(e) for e in events[:-1]]
    assert kinds == sorted(kinds, key=lambda k: k is ToolCall)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    calls = [e for e in events if isinstance(e, ToolCall)]
    return deltas, calls, events[-1]


def said(deltas: list[TextDelta]) -> str:
    return "".join(d.text for d in deltas)


def test_first_reply_carries_the_label_once() -> None:
    deltas, calls, finished = ask(user("Hello, is anyone there?"))
    assert said(deltas).startswith("This is the local development model, not a real language")
    assert len(deltas) >= 4  # word groups, not one block
    assert calls == [] and finished.reason == "stop"

    again, _, _ = ask(LABELLED, user("Hello, is anyone there?"))
    assert "development model" not in said(again)
    assert said(again).startswith("I heard you say: Hello, is anyone there.")


def test_goodbye_ends_the_call() -> None:
    for words in ("Okay, bye!", "Goodbye then", "that's all, thanks", "good by", "please hang up"):
        deltas, calls, finished = ask(LABELLED, user(words))
        assert [(c.name, c.arguments) for c in calls] == [
            ("end_call", {"reason": "caller said goodbye"})
        ], words
        assert finished.reason == "tool_calls"
        assert "Goodbye" in said(deltas)
    # without the tool, it is just echoed
    _, calls, finished = ask(LABELLED, user("goodbye"), tools=(CHECK,))
    assert calls == [] and finished.reason == "stop"


def test_asking_for_a_person_transfers_to_the_first_destination() -> None:
    for words in ("Can I talk to a human?", "transfer me", "get me an agent", "representatives"):
        _, calls, finished = ask(LABELLED, user(words))
        assert len(calls) == 1 and calls[0].name == "transfer_call", words
        assert calls[0].arguments["destination"] == "Sales desk"
        assert calls[0].arguments["reason"]
        assert finished.reason == "tool_calls"
    no_enum = ToolSpec("transfer_call", "Transfer.", {"type": "object", "properties": {}})
    _, calls, _ = ask(LABELLED, user("a real person please"), tools=(no_enum,))
    assert "destination" not in calls[0].arguments
    # "personal" is not a person
    _, calls, _ = ask(LABELLED, user("my personal details"), tools=(TRANSFER,))
    assert calls == []


def test_availability_is_checked_for_tomorrow() -> None:
    deltas, calls, finished = ask(LABELLED, user("Do you have any availability?"))
    assert [c.name for c in calls] == ["check_availability"]
    assert calls[0].arguments == {"start_date": "2030-01-15", "end_date": "2030-01-15"}
    assert finished.reason == "tool_calls"
    assert "availability" in said(deltas)
    for words in ("I'd like an appointment", "can we schedule a meeting", "any free slots"):
        _, calls, _ = ask(LABELLED, user(words))
        assert [c.name for c in calls] == ["check_availability"], words

    # required properties are filled whatever they are called
    other = ToolSpec(
        "check_availability",
        "Free times.",
        {
            "type": "object",
            "properties": {"day": {"type": "string"}, "duration": {"type": "integer"}},
            "required": ["day", "duration"],
        },
    )
    _, calls, _ = ask(LABELLED, user("when are you available"), tools=(other,))
    assert calls[0].arguments == {"day": "2030-01-15", "duration": 1}


def test_offered_slots_read_out_and_yes_books_the_first() -> None:
    offered = tool_result("check_availability", {"timezone": "America/New_York", "slots": SLOTS})
    history = [LABELLED, user("an appointment please"), *offered]
    deltas, calls, finished = ask(*history)
    text = said(deltas)
    assert text == (
        "I have Tuesday at 9:30 AM, Tuesday at 10:00 AM or Tuesday at 2:00 PM. "
        "Shall I book the first one?"
    )
    assert calls == [] and finished.reason == "stop"

    history += [ChatMessage("assistant", text)]
    for words in ("yes", "Yeah, book it", "confirm please"):
        _, calls, finished = ask(*history, user(words))
        assert [(c.name, c.arguments) for c in calls] == [
            (
                "book_meeting",
                {"start": SLOTS[0], "name": "Local Caller", "email": "caller@example.com"},
            )
        ], words
        assert finished.reason == "tool_calls"

    # "yes" with nothing offered (or after the booking went through) books nothing
    _, calls, _ = ask(LABELLED, user("yes"))
    assert calls == []
    booked = tool_result("book_meeting", {"booked": True, "start": SLOTS[0]}, "call_2")
    _, calls, _ = ask(*history, user("yes"), *booked, user("yes"))
    assert calls == []
    # "yesterday" is not a yes
    _, calls, _ = ask(*history, user("yesterday"))
    assert [c.name for c in calls] != ["book_meeting"]


def test_tool_results_become_short_sentences() -> None:
    booked = {"booked": True, "status": "accepted", "start": SLOTS[0], "name": "Local Caller"}
    deltas, calls, _ = ask(LABELLED, *tool_result("book_meeting", booked))
    assert said(deltas) == "You're booked for Tuesday at 9:30 AM."
    assert calls == []

    failed = {"error": "the scheduling service could not be reached"}
    deltas, _, _ = ask(LABELLED, *tool_result("book_meeting", failed))
    assert said(deltas) == (
        "Sorry, the book meeting tool failed: the scheduling service could not be reached."
    )

    deltas, _, _ = ask(LABELLED, *tool_result("check_availability", {"slots": []}))
    assert "no free times" in said(deltas)

    order = {"order": "A-17", "status": "shipped", "eta": "Friday", "gift": False}
    deltas, _, _ = ask(LABELLED, *tool_result("lookup_order", order))
    assert said(deltas) == (
        "The lookup order tool answered: order A-17, status shipped, eta Friday, gift no."
    )

    big = {"items": [{"sku": f"S{i}", "name": "a very long product name"} for i in range(20)]}
    deltas, _, _ = ask(LABELLED, *tool_result("lookup_order", big))
    spoken = said(deltas).removeprefix("The lookup order tool answered: ")
    assert len(spoken.split()) <= 31

    # two results in a row: one sentence each, in order
    two = [
        *tool_result("lookup_order", {"status": "shipped"}, "a"),
        ChatMessage("tool", '{"error": "timeout"}', tool_call_id="b", name="weather"),
    ]
    deltas, _, _ = ask(LABELLED, *two)
    assert said(deltas) == (
        "The lookup order tool answered: status shipped. Sorry, the weather tool failed: timeout."
    )


def test_webhook_tools_are_called_when_their_words_are_heard() -> None:
    deltas, calls, finished = ask(LABELLED, user("Where is my order? It's number 4711."))
    assert [(c.name, c.arguments) for c in calls] == [
        (
            "lookup_order",
            {"order_number": "4711", "include_items": True, "limit": 1, "channel": "phone"},
        )
    ]
    assert "lookup order" in said(deltas)
    assert finished.reason == "tool_calls"
    # plural and suffixes still match ("deliveries" ~ "delivery")
    _, calls, _ = ask(LABELLED, user("what about my deliveries"))
    assert [c.name for c in calls] == ["lookup_order"]
    # a string parameter without digits in the text gets the caller's words
    note = ToolSpec(
        "leave_note",
        "Leave a message for the owner.",
        {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    )
    _, calls, _ = ask(LABELLED, user("I want to leave a message"), tools=(note,))
    assert calls[0].arguments == {"text": "I want to leave a message"}
    # common words in a description do not trigger a tool
    _, calls, _ = ask(LABELLED, user("what would you like"), tools=(LOOKUP,))
    assert calls == []


def test_a_caller_asking_not_to_be_called_again_gets_opt_out_and_nothing_else() -> None:
    for words in ("Please stop calling me", "Take me off your list!", "don't call me again"):
        deltas, calls, finished = ask(LABELLED, user(words))
        assert [c.name for c in calls] == ["opt_out"], words
        assert said(deltas) == "" and finished.reason == "tool_calls"
    # The words of its description are not a reason to call it (as they would be a webhook's).
    for words in ("Can you call me again on Monday", "who is the caller", "what is on the list"):
        _, calls, _ = ask(LABELLED, user(words))
        assert "opt_out" not in [c.name for c in calls], words


def test_keypad_presses_are_read_back() -> None:
    assert said(ask(LABELLED, user("[DTMF 1]"))[0]) == "You pressed 1."
    assert said(ask(LABELLED, user("The caller pressed 7"))[0]) == "You pressed 7."
    assert (
        said(ask(LABELLED, user("[The caller pressed 12# on the keypad]"))[0])
        == "You pressed 1 2 pound."
    )


def test_anything_else_is_echoed_with_what_it_can_do() -> None:
    deltas, calls, finished = ask(LABELLED, user("The weather is nice today."))
    assert said(deltas) == (
        "I heard you say: The weather is nice today. "
        "I can check availability, lookup order, transfer you or end the call."
    )
    assert calls == [] and finished.reason == "stop"
    deltas, _, _ = ask(LABELLED, user("hmm"), tools=())
    assert said(deltas) == "I heard you say: hmm. I only repeat what I hear."
    assert said(ask(LABELLED, user("  "))[0]) == "Sorry, I didn't catch that."
    # nothing said yet: a greeting (with the label)
    first, _, _ = ask()
    assert said(first) == f"{LABEL} Hello, how can I help you?"


def test_ids_are_unique_and_replies_deterministic() -> None:
    history = (LABELLED, user("goodbye"))
    runs = [ask(*history) for _ in range(3)]
    ids = {call.id for _, calls, _ in runs for call in calls}
    assert len(ids) == 3
    texts = {said(deltas) for deltas, _, _ in runs}
    arguments = {json.dumps([(c.name, c.arguments) for c in calls]) for _, calls, _ in runs}
    assert len(texts) == 1 and len(arguments) == 1
    assert dev.PROVIDER == DevelopmentModel.provider == "dev"


# =========================================================================== the registry
def test_the_registry_builds_these_stand_ins_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the `speech` extra (test_offline_speech covers the defaults with it)
    monkeypatch.setattr("talkturo.voice.providers.stt.whisper.available", lambda: False)
    monkeypatch.setattr("talkturo.voice.providers.tts.piper.available", lambda: False)
    providers = registry.Providers({"TALKTURO_OFFLINE_PROVIDERS": "1"})
    assert isinstance(providers.language_model("openai"), DevelopmentModel)
    assert isinstance(providers.transcriber("deepgram"), PocketsphinxTranscriber)
    voice = providers.synthesizer("cartesia", VoiceOptions(model="", voice_id="", language="fr"))
    assert isinstance(voice, EspeakSynthesizer) and voice.voice == "fr"
    assert [s.layer for s in providers.stand_ins] == ["llm", "transcriber", "voice"]
    assert stt_offline.PocketsphinxTranscriber.provider == "pocketsphinx"


@needs_espeak
def test_the_offline_voice_is_understood_by_the_offline_transcriber() -> None:
    async def scenario() -> list[SttEvent]:
        voice = EspeakSynthesizer(VoiceOptions(model="", voice_id="", language="en-US"))
        audio = b"".join([chunk async for chunk in voice.synthesize("Hello world.")])
        await voice.close()
        stream = await PocketsphinxTranscriber().open(OPTIONS)
        seen = Collector(stream)
        await send_frames(stream, silence(0.3) + audio + silence(0.8))
        await stream.close()
        await seen.task
        return seen.events

    finals = [e for e in run(scenario()) if isinstance(e, Transcript) and e.final]
    assert [f.text for f in finals] == ["hello world"]


@needs_espeak
def test_a_conversing_caller_s_ear_gives_the_text_of_what_it_heard() -> None:
    from talkturo.simcaller.voice import transcribe

    speech = speak("I would like to book an appointment for tomorrow", engine="espeak-ng")
    # Heard audio as a caller keeps it: the words, then nothing (no trailing silence needed)
    heard = without_trailing_silence(speech.audio)
    text = run(transcribe(PocketsphinxTranscriber(), OPTIONS, heard, settle=1.0))
    assert "appointment" in text.split() and "tomorrow" in text.split(), text
    # Silence heard is no words
    assert run(transcribe(PocketsphinxTranscriber(), OPTIONS, silence(1.0), settle=0.5)) == ""
