"""The voice service under load: N simultaneous simulated calls on one core.

Two processes, each pinned to a core of its own:

- the service (A): a `VoiceService` on 127.0.0.1 with in-memory call contexts, no-op side
  effects (store, carrier, ledger) and, per call, fresh scripted providers of fixed latency:
  the transcriber's final 150 ms after speech ends, the model's first token after 300 ms then
  50 tokens/s, the voice's first audio after 100 ms. It reports its CPU time, every outbound
  frame's lateness (`Playout.lateness`) and, per turn, when each stage happened.
- the callers (B): N Media Streams clients (`connected`, `start` with a signed token, then a
  mu-law frame every 20 ms on a monotonic schedule, marks echoed once their audio has played,
  as the carrier does). Each call: a pause of about a second, 1.2 s of speech (a tone the
  scripted transcriber hears as words), silence until the reply's first frame arrives, the
  reply played out, again.

Added latency of a turn = (the reply's first frame received - the caller's end of speech)
- (transcriber 150 ms + the model's time to the first speakable piece + voice 100 ms). The end
of speech is when the caller sent its first silent frame, less that frame's 20 ms (what the
transcriber reckons too); the model's time to the first piece is 300 ms + (k - 1)/50 s, k being
the tokens the chunker needs before it cuts the reply's first piece. Only turns, frames and CPU
inside the measured window count (each level starts with a warm-up that is not measured).

The service's figures come from its sessions: process A builds them through a `CallSession`
subclass that keeps a list of them (no change to the product code).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import cProfile
import io
import json
import math
import multiprocessing
import os
import pstats
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any, ClassVar

from websockets.asyncio.client import ClientConnection, connect

from talkturo import audio, tokens
from talkturo.domain.assistants import (
    AssistantConfig,
    AssistantRecord,
    deep_merge,
    validate_config,
)
from talkturo.domain.calls import CallRecord
from talkturo.domain.catalog import get_catalog
from talkturo.domain.common import utcnow
from talkturo.voice import server as voice_server
from talkturo.voice.chunker import Chunker
from talkturo.voice.context import CallContext
from talkturo.voice.providers.base import ChatRequest, Finished, LlmEvent, TextDelta, ToolCall
from talkturo.voice.providers.scripted import (
    ScriptedModel,
    ScriptedTranscriber,
    ToneVoice,
    say,
    tone_speech,
)
from talkturo.voice.session import CallProviders, CallSession, SessionServices, SessionSettings

# --------------------------------------------------------------------------- the workload

FINAL_DELAY = 0.15  # transcriber: final transcript after the end of speech
FIRST_TOKEN_DELAY = 0.3  # model: first token
TOKENS_PER_SECOND = 50.0  # model: then
FIRST_AUDIO_DELAY = 0.1  # voice: first audio
LATE = 0.04  # a frame sent more than this after its due time is late
REPLY = (
    "Sure, I can help with that. We have a table for two at seven thirty on Friday evening. "
    "Would you like me to book it under your name?"
)
CALLER_LINE = "I'd like to book a table for two on Friday evening, please."
SPEECH_SECONDS = 1.2
PAUSE_SECONDS = (0.8, 1.2)  # before each turn, drawn per turn so calls drift apart
REPLY_TIMEOUT = 5.0  # no reply frame this long after the speech: counted as no reply
LEVELS = (10, 25, 50, 100, 150, 200)
TOKEN_SECRET = "voice-benchmark-secret"
ACCOUNT_ID = "acct_benchmark"
FRAME_SECONDS = 0.02


def reply_tokens(reply: str = REPLY) -> list[str]:
    """The deltas the scripted model streams: one per word, a space before all but the first."""
    words = reply.split(" ")
    return [word if index == 0 else " " + word for index, word in enumerate(words)]


def first_piece_tokens(reply: str = REPLY) -> int:
    """k: the tokens the chunker needs before it cuts the reply's first speakable piece."""
    chunker = Chunker()
    for count, token in enumerate(reply_tokens(reply), start=1):
        if chunker.feed(token):
            return count
    return len(reply_tokens(reply))  # one piece: cut when the reply ends


def reply_pieces(reply: str = REPLY) -> list[str]:
    chunker = Chunker()
    pieces = [piece for token in reply_tokens(reply) for piece in chunker.feed(token)]
    return [*pieces, *chunker.flush()]


def model_first_piece_seconds(reply: str = REPLY) -> float:
    return FIRST_TOKEN_DELAY + (first_piece_tokens(reply) - 1) / TOKENS_PER_SECOND


def provider_latency(reply: str = REPLY) -> float:
    """The configured providers' share of a turn's latency (seconds)."""
    return FINAL_DELAY + model_first_piece_seconds(reply) + FIRST_AUDIO_DELAY


def percentile(values: list[float], p: float) -> float:
    """Nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# --------------------------------------------------------------------------- process A


def _assistant() -> AssistantRecord:
    catalog = get_catalog()
    config = validate_config(
        deep_merge(
            catalog.default_layers(),
            {
                "name": "Bookings",
                "system_prompt": "You take table bookings for {{account.name}}. Be brief.",
            },
        ),
        catalog,
    )
    now = utcnow()
    fields = {name: getattr(config, name) for name in AssistantConfig.model_fields}
    return AssistantRecord(**fields, id="asst_benchmark", created_at=now, updated_at=now)


@dataclass
class PacedModel(ScriptedModel):
    """The scripted model on the provider's clock.

    `ScriptedModel` sleeps a token interval after each token; every asyncio sleep runs long by
    the timer's rounding (0.2 to 4 ms a sleep on the machine measured), so its k-th token comes
    later than configured by a sum that no real provider's stream has. This one, with the same
    parameters, sends token n at request + first_token_delay + (n - 1)/tokens_per_second, and
    notes when each request came and when its token `timed_token` went out.
    """

    timed_token: int = 1
    asked: list[float] = field(default_factory=list)
    timed: list[float] = field(default_factory=list)

    async def stream(self, request: ChatRequest) -> AsyncIterator[LlmEvent]:
        self.requests.append(request)
        asked = time.monotonic()
        self.asked.append(asked)
        sent = 0
        calls: list[ToolCall] = []
        for item in self.respond(request):
            if isinstance(item, ToolCall):
                calls.append(item)
                continue
            for word in item.split(" "):
                due = asked + self.first_token_delay + sent / self.tokens_per_second
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                sent += 1
                if sent == 1:
                    self.first_tokens.append(time.monotonic())
                if sent == self.timed_token:
                    self.timed.append(time.monotonic())
                yield TextDelta(word if sent == 1 else " " + word)
        for call in calls:
            yield call
        yield Finished("tool_calls" if calls else "stop")


class SharedToneVoice(ToneVoice):
    """ToneVoice computes its tone in pure Python (about 25 ms a piece, blocking the loop):
    here the tones are computed once per process, so the fake's work is not the platform's."""

    def __init__(self, tones: dict[str, bytes]) -> None:
        super().__init__(first_audio_delay=FIRST_AUDIO_DELAY)
        self._cache = tones


class NoSideEffects(SessionServices):
    """No store, carrier or ledger: the service's own work only."""

    def charge(self, account_id: str, amount: Decimal, key: str, allow_negative: bool) -> None:
        return None

    async def mark_connected(self, context: CallContext) -> None:
        return None

    async def answered_by(self, context: CallContext) -> str | None:
        return None

    async def hang_up(self, carrier_sid: str) -> None:
        return None

    async def record_end(self, context: CallContext, event: Any) -> None:
        return None

    async def save(self, context: CallContext, session: CallSession) -> None:
        return None

    async def checkpoint(self, context: CallContext, messages: list[Any]) -> None:
        return None

    async def close(self, context: CallContext, **kwargs: Any) -> None:
        return None

    async def opt_out(self, context: CallContext, detail: str) -> str | None:
        return None


def _check_no_side_effects() -> None:
    """Every side effect of a session is replaced (a new one would otherwise reach AWS)."""
    import inspect

    left = [
        name
        for name, member in inspect.getmembers(SessionServices, inspect.isfunction)
        if not name.startswith("_")
        and name not in ("transfer", "webhook", "scheduling")  # tools: never called here
        and name not in ("can_transfer", "opt_out_note")  # answers, no I/O
        and getattr(NoSideEffects, name) is member
    ]
    if left:
        raise RuntimeError(f"NoSideEffects must replace: {', '.join(left)}")


class TrackedSession(CallSession):
    """A CallSession the benchmark can find (its playout, its replies' first audio)."""

    live: ClassVar[list[CallSession]] = []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        TrackedSession.live.append(self)


class _Service:
    """The service under test and what the benchmark reads from it (in process A)."""

    def __init__(self, profile: bool) -> None:
        self.sessions = TrackedSession.live
        self.models: dict[str, PacedModel] = {}
        self.transcribers: dict[str, ScriptedTranscriber] = {}
        self.assistant = _assistant()
        self.k = first_piece_tokens()
        self.tones = {piece: tone_speech(piece) for piece in reply_pieces()}
        self.pieces = len(self.tones)
        _check_no_side_effects()
        # Process A only: the service builds its sessions through this name.
        voice_server.CallSession = TrackedSession  # type: ignore[misc]
        self.service = voice_server.VoiceService(
            voice_server.ServiceOptions(
                auth_token=lambda: None,
                token_secret=lambda: TOKEN_SECRET,
                public_url="ws://127.0.0.1",
                provider_env=dict,
                services=NoSideEffects(),
                settings=SessionSettings(
                    silence_nudge_seconds=3600.0, silence_hangup_seconds=7200.0
                ),
                build_providers=self._build_providers,
                load_context=self._load_context,
            )
        )
        self.profiler = cProfile.Profile() if profile else None
        self.offsets: dict[int, int] = {}
        self.cpu_mark = 0.0
        self.wall_mark = 0.0

    def _load_context(self, account_id: str, call_id: str) -> CallContext:
        call = CallRecord(
            id=call_id,
            direction="inbound",
            status="in_progress",
            assistant_id=self.assistant.id,
            phone_number_id="pn_benchmark",
            from_number="+15550100001",
            to_number="+15550100002",
            created_at=utcnow(),
        )
        context = CallContext(
            account_id=account_id, account_name="Benchmark", call=call, assistant=self.assistant
        )
        context.fill_variables()
        return context

    def _build_providers(self, context: CallContext, env: dict[str, str]) -> CallProviders:
        model = PacedModel(
            respond=say(REPLY),
            first_token_delay=FIRST_TOKEN_DELAY,
            tokens_per_second=TOKENS_PER_SECOND,
            timed_token=self.k,
        )
        transcriber = ScriptedTranscriber(final_delay=FINAL_DELAY, default_line=CALLER_LINE)
        self.models[context.call.id] = model
        self.transcribers[context.call.id] = transcriber
        return CallProviders(llm=model, transcriber=transcriber, voice=SharedToneVoice(self.tones))

    def mark(self) -> None:
        self.offsets = {id(s): len(s.playout.lateness.samples) for s in self.sessions}
        if self.profiler is not None:
            self.profiler.enable()
        self.wall_mark = time.monotonic()
        self.cpu_mark = time.process_time()

    def report(self) -> dict[str, Any]:
        cpu = time.process_time() - self.cpu_mark
        wall = time.monotonic() - self.wall_mark
        if self.profiler is not None:
            self.profiler.disable()
        late: list[float] = []
        truncated = False
        for session in self.sessions:
            lateness = session.playout.lateness
            truncated = truncated or lateness.frames != len(lateness.samples)
            late.extend(lateness.samples[self.offsets.get(id(session), 0) :])
        return {
            "cpu_seconds": cpu,
            "wall_seconds": wall,
            "sessions": len(self.sessions),
            "frames": len(late),
            "late_frames": sum(1 for value in late if value > LATE),
            "lateness_p50": percentile(late, 50),
            "lateness_p99": percentile(late, 99),
            "lateness_max": max(late, default=math.nan),
            "lateness_truncated": truncated,
            "turns": {s.context.call.id: self._turns(s) for s in self.sessions},
            "profile": self._profile_text(),
        }

    def _turns(self, session: CallSession) -> list[tuple[float, ...]]:
        """Per turn: speech end (as the transcriber saw it), final sent, model asked, the
        first piece's last token sent, first audio from the voice, first frame sent."""
        call_id = session.context.call.id
        model, transcriber = self.models[call_id], self.transcribers[call_id]
        segments = [session.playout.segments[key] for key in sorted(session.playout.segments)]
        first_frames = [s.first_sent_at for s in segments[:: self.pieces]]
        return [
            (ended, sent, asked, token, audio_at, frame)
            for (ended, sent, _text), asked, token, audio_at, frame in zip(
                transcriber.finals,
                model.asked,
                model.timed,
                session.reply_first_audio,
                first_frames,
                strict=False,
            )
            if frame is not None
        ]

    def _profile_text(self) -> str | None:
        if self.profiler is None:
            return None
        out = io.StringIO()
        stats = pstats.Stats(self.profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)
        return out.getvalue()


def _serve(conn: Connection, core: int | None, profile: bool) -> None:
    """Process A's entry point: serve until told to exit."""
    # The product logs JSON lines to stdout: they go nowhere (still written, as in production).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    if core is not None:
        os.sched_setaffinity(0, {core})
    asyncio.run(_serve_async(conn, profile))


async def _serve_async(conn: Connection, profile: bool) -> None:
    service = _Service(profile)
    port = await service.service.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def on_command() -> None:
        try:
            command = conn.recv()
        except EOFError:
            done.set()
            return
        if command == "mark":
            service.mark()
        elif command == "report":
            conn.send(service.report())
        else:
            done.set()

    loop.add_reader(conn.fileno(), on_command)
    conn.send({"port": port})
    await done.wait()
    loop.remove_reader(conn.fileno())
    await service.service.stop()


# --------------------------------------------------------------------------- process B


def _b64_frames(mulaw: bytes) -> list[str]:
    size = 160
    return [
        base64.b64encode(mulaw[i : i + size].ljust(size, b"\xff")).decode()
        for i in range(0, len(mulaw), size)
    ]


@dataclass
class _Turn:
    call_id: str
    number: int  # the call's turns so far (the service's per-turn figures line up with it)
    speech_end: float  # the first silent frame sent, less its 20 ms (monotonic)
    first_reply: float | None  # the reply's first media frame received


@dataclass
class _CallerStats:
    send_lateness: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Caller:
    """One simulated caller: the carrier's side of a Media Streams connection."""

    def __init__(
        self, index: int, port: int, speech: list[str], stats: _CallerStats, seed: int
    ) -> None:
        self.call_id = f"call_bench{index:04d}"
        self.stream_sid = f"MZbench{index:04d}"
        self.call_sid = f"CAbench{index:04d}"
        self.url = f"ws://127.0.0.1:{port}/media"
        self.speech = speech
        self.stats = stats
        self.rng = random.Random(seed)
        self.turns: list[_Turn] = []
        self.sequence = 0
        self.speech_left = 0
        self.speech_done = asyncio.Event()
        self.speech_end = 0.0
        self.waiting_reply = False
        self.first_reply = asyncio.Event()
        self.first_reply_at = 0.0
        self.play_until = 0.0
        self.last_media = 0.0
        self.marks: list[tuple[float, str]] = []
        self.finished = False

    def _message(self, event: str, body: dict[str, Any]) -> str:
        self.sequence += 1
        return json.dumps(
            {"event": event, "sequenceNumber": str(self.sequence), "streamSid": self.stream_sid}
            | body
        )

    async def run(self, start_at: float, stop: asyncio.Event) -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        token = tokens.sign(
            {"call": self.call_id, "account": ACCOUNT_ID, "assistant": "asst_benchmark"},
            TOKEN_SECRET,
        )
        try:
            async with connect(self.url, compression=None, open_timeout=20) as ws:
                await ws.send(
                    json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
                )
                start = {
                    "accountSid": "ACbenchmark",
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": {"token": token},
                }
                await ws.send(self._message("start", {"start": start}))
                tasks = [
                    asyncio.create_task(self._send_audio(ws)),
                    asyncio.create_task(self._receive(ws)),
                ]
                await self._converse(stop)
                self.finished = True
                await tasks[0]
                await ws.send(
                    self._message(
                        "stop", {"stop": {"accountSid": "ACbenchmark", "callSid": self.call_sid}}
                    )
                )
                tasks[1].cancel()
                with contextlib.suppress(BaseException):
                    await tasks[1]
        except Exception as error:  # counted and printed; the level goes on
            self.stats.errors.append(f"{self.call_id}: {error!r}")

    async def _send_audio(self, ws: ClientConnection) -> None:
        """A frame every 20 ms on a monotonic schedule (late frames go at once, none skipped);
        marks echoed once the audio before them has played."""
        silence = base64.b64encode(b"\xff" * 160).decode()
        due = time.monotonic()
        index = 0
        spoken = 0
        speech_ending = False
        while not self.finished:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            self.stats.send_lateness.append(now - due)
            while self.marks and self.marks[0][0] <= now:
                _, name = self.marks.pop(0)
                await ws.send(self._message("mark", {"mark": {"name": name}}))
            if self.speech_left:
                payload = self.speech[spoken % len(self.speech)]
                spoken += 1
            else:
                payload = silence
            if speech_ending:
                # The first silent frame: speech ended 20 ms of audio before it (as the
                # transcriber reckons), whenever this process got round to sending it.
                speech_ending = False
                self.speech_end = time.monotonic() - FRAME_SECONDS
                self.speech_done.set()
            await ws.send(
                f'{{"event":"media","sequenceNumber":"{self.sequence + 1}",'
                f'"streamSid":"{self.stream_sid}","media":{{"track":"inbound",'
                f'"chunk":"{index + 1}","timestamp":"{index * 20}","payload":"{payload}"}}}}'
            )
            self.sequence += 1
            if self.speech_left:
                self.speech_left -= 1
                speech_ending = not self.speech_left
            index += 1
            due += FRAME_SECONDS

    async def _receive(self, ws: ClientConnection) -> None:
        async for raw in ws:
            message = json.loads(raw)
            event = message.get("event")
            now = time.monotonic()
            if event == "media":
                if self.waiting_reply and not self.first_reply.is_set():
                    self.first_reply_at = now
                    self.first_reply.set()
                self.play_until = max(self.play_until, now) + FRAME_SECONDS
                self.last_media = now
            elif event == "mark":
                self.marks.append((self.play_until, message["mark"]["name"]))
            elif event == "clear":
                self.play_until = now
                self.marks = [(now, name) for _, name in self.marks]

    async def _sleep_unless(self, stop: asyncio.Event, seconds: float) -> bool:
        """Sleep; False when the level ended meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        return not stop.is_set()

    async def _converse(self, stop: asyncio.Event) -> None:
        speech_frames = round(SPEECH_SECONDS / FRAME_SECONDS)
        while await self._sleep_unless(stop, self.rng.uniform(*PAUSE_SECONDS)):
            self.speech_done.clear()
            self.first_reply.clear()
            self.speech_left = speech_frames
            # The sender stops only when the connection fails: that fails the call (an error).
            await asyncio.wait_for(self.speech_done.wait(), SPEECH_SECONDS + REPLY_TIMEOUT)
            self.waiting_reply = True
            try:
                await asyncio.wait_for(self.first_reply.wait(), REPLY_TIMEOUT)
                first: float | None = self.first_reply_at
            except TimeoutError:
                first = None
            self.waiting_reply = False
            self.turns.append(_Turn(self.call_id, len(self.turns), self.speech_end, first))
            # Let the reply play out: no new audio for a while and nothing left to play.
            while not stop.is_set():
                now = time.monotonic()
                if now - self.last_media > 0.3 and now > self.play_until and not self.marks:
                    break
                await asyncio.sleep(0.1)


def _busy_seconds(cores: tuple[int, ...] | None) -> float:
    """CPU time spent on these cores (all of them: None) by every process, from /proc/stat:
    user, nice, system and steal; not interrupts (the loopback traffic's own), not idle."""
    try:
        with open("/proc/stat") as stat:
            lines = stat.read().splitlines()
    except OSError:
        return math.nan
    names = {f"cpu{core}" for core in cores} if cores is not None else {"cpu"}
    ticks = 0
    for line in lines:
        name, *values = line.split()
        if name in names:
            user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(int, values[:8])
            ticks += user + nice + system + steal
    return ticks / os.sysconf("SC_CLK_TCK")


async def _callers(
    conn: Connection,
    port: int,
    calls: int,
    seconds: float,
    warmup: float,
    seed: int,
    cores: tuple[int, ...] | None,
) -> dict[str, Any]:
    speech = _b64_frames(tone_speech(CALLER_LINE)[: audio.FRAME_BYTES * 60])
    stats = _CallerStats()
    stop = asyncio.Event()
    begin = time.monotonic() + 0.2
    stagger = min(3.0, 0.05 * calls)
    callers = [_Caller(i, port, speech, stats, seed * 1000 + i) for i in range(calls)]
    tasks = [
        asyncio.create_task(c.run(begin + stagger * i / calls, stop)) for i, c in enumerate(callers)
    ]
    await asyncio.sleep(max(0.0, begin + warmup - time.monotonic()))
    conn.send("mark")
    window_start = time.monotonic()
    cpu_start = time.process_time()
    busy_start = _busy_seconds(cores)
    lateness_start = len(stats.send_lateness)
    await asyncio.sleep(max(0.0, window_start + seconds - time.monotonic()))
    conn.send("report")
    window_end = time.monotonic()
    cpu = time.process_time() - cpu_start
    busy = _busy_seconds(cores) - busy_start
    send_lateness = stats.send_lateness[lateness_start:]
    if not await asyncio.to_thread(conn.poll, 60):
        raise RuntimeError("the service did not report")
    service: dict[str, Any] = conn.recv()
    stop.set()
    await asyncio.wait(tasks, timeout=15)
    # Turns of the window: the caller stopped speaking inside it and the reply (or the
    # time-out) came before its end, when the service stopped to report.
    turns = [
        t
        for c in callers
        for t in c.turns
        if t.speech_end >= window_start
        and (
            t.first_reply <= window_end
            if t.first_reply is not None
            else t.speech_end + REPLY_TIMEOUT <= window_end
        )
    ]
    return {
        "service": service,
        "turns": turns,
        "caller_cpu": cpu / (window_end - window_start),
        # What other processes took of the two cores meanwhile: they disturb the figures.
        "others_cpu": (busy - cpu - service["cpu_seconds"]) / (window_end - window_start),
        "caller_send_p99": percentile(send_lateness, 99),
        "errors": stats.errors,
    }


# --------------------------------------------------------------------------- a level


@dataclass
class LevelResult:
    calls: int
    turns: int
    no_reply: int
    added_p50_ms: float
    added_p99_ms: float
    cpu_per_call_pct: float
    lateness_p50_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    frames: int
    late_frames: int
    sessions: int
    caller_cpu_pct: float
    others_cpu_pct: float
    caller_send_p99_ms: float
    stages_p50_ms: dict[str, float]
    stages_p99_ms: dict[str, float]
    errors: list[str]
    notes: list[str]
    profile: str | None = None


# The stages of a turn's added latency, each less its configured provider latency.
STAGES = (
    ("caller→service", "inbound"),  # the caller's first silent frame reaches the transcriber
    ("transcriber", "final"),  # its final transcript, past the 150 ms
    ("turn→model", "turn"),  # end of turn decided, the request built and sent
    ("model", "model"),  # the first piece's last token, past 300 ms + (k - 1)/50 s
    ("piece→voice", "voice"),  # chunker, piece to the voice, its first audio past 100 ms
    ("voice→frame", "playout"),  # the first audio to the first frame sent
    ("service→caller", "outbound"),  # the frame through the socket to the caller
)


def _cores() -> tuple[int, int] | None:
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None
    return (available[0], available[1]) if len(available) >= 2 else None


@contextlib.contextmanager
def _pinned(core: int | None) -> Iterator[None]:
    if core is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run_level(
    calls: int,
    *,
    seconds: float = 30.0,
    warmup: float = 4.0,
    pin: bool = True,
    profile: bool = False,
    seed: int = 1,
) -> LevelResult:
    """One level: a fresh service process, `calls` callers, `seconds` measured after `warmup`."""
    cores = _cores() if pin else None
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=_serve,
        args=(child, cores[0] if cores else None, profile),
        name="voice-service",
        daemon=True,
    )
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the voice service did not start")
        port = int(parent.recv()["port"])
        with _pinned(cores[1] if cores else None):
            got = asyncio.run(_callers(parent, port, calls, seconds, warmup, seed, cores))
    finally:
        with contextlib.suppress(OSError):
            parent.send("exit")
        process.join(15)
        if process.is_alive():
            process.terminate()
            process.join(5)
    return _result(calls, got, pinned=cores is not None)


def _result(calls: int, got: dict[str, Any], *, pinned: bool) -> LevelResult:
    service = got["service"]
    configured = provider_latency()
    added: list[float] = []
    stages: dict[str, list[float]] = {key: [] for _, key in STAGES}
    no_reply = 0
    for turn in got["turns"]:
        if turn.first_reply is None:
            no_reply += 1
            continue
        added.append(turn.first_reply - turn.speech_end - configured)
        server_turns = service["turns"].get(turn.call_id, [])
        if turn.number < len(server_turns):
            ended, final, asked, token, audio_at, frame = server_turns[turn.number]
            stages["inbound"].append(ended - turn.speech_end)
            stages["final"].append(final - ended - FINAL_DELAY)
            stages["turn"].append(asked - final)
            stages["model"].append(token - asked - model_first_piece_seconds())
            stages["voice"].append(audio_at - token - FIRST_AUDIO_DELAY)
            stages["playout"].append(frame - audio_at)
            stages["outbound"].append(turn.first_reply - frame)
    notes = []
    if not pinned:
        notes.append("not pinned to cores (fewer than 2 CPUs available)")
    if service["lateness_truncated"]:
        notes.append("some sessions' lateness samples were capped")
    others = 100 * got["others_cpu"]
    if others > 10:
        notes.append(f"other processes took {others:.0f}% of a core meanwhile: figures disturbed")
    if service["sessions"] != calls:
        notes.append(f"{service['sessions']} sessions for {calls} calls")
    ms = 1000.0
    return LevelResult(
        calls=calls,
        turns=len(added),
        no_reply=no_reply,
        added_p50_ms=percentile(added, 50) * ms,
        added_p99_ms=percentile(added, 99) * ms,
        cpu_per_call_pct=100 * service["cpu_seconds"] / service["wall_seconds"] / calls,
        lateness_p50_ms=service["lateness_p50"] * ms,
        lateness_p99_ms=service["lateness_p99"] * ms,
        lateness_max_ms=service["lateness_max"] * ms,
        frames=service["frames"],
        late_frames=service["late_frames"],
        sessions=service["sessions"],
        caller_cpu_pct=100 * got["caller_cpu"],
        others_cpu_pct=100 * got["others_cpu"],
        caller_send_p99_ms=got["caller_send_p99"] * ms,
        stages_p50_ms={key: percentile(values, 50) * ms for key, values in stages.items()},
        stages_p99_ms={key: percentile(values, 99) * ms for key, values in stages.items()},
        errors=got["errors"],
        notes=notes,
        profile=service["profile"],
    )


# --------------------------------------------------------------------------- the report

HEADER = (
    f"{'calls':>6} {'turns':>6} {'added p50':>10} {'added p99':>10} {'CPU/call':>9} "
    f"{'late p50':>9} {'late p99':>9} {'late max':>9} {'frames':>8} {'>40ms':>6}"
)


def row(r: LevelResult) -> str:
    return (
        f"{r.calls:>6} {r.turns:>6} {r.added_p50_ms:>8.1f}ms {r.added_p99_ms:>8.1f}ms "
        f"{r.cpu_per_call_pct:>8.2f}% {r.lateness_p50_ms:>7.1f}ms {r.lateness_p99_ms:>7.1f}ms "
        f"{r.lateness_max_ms:>7.1f}ms {r.frames:>8} {r.late_frames:>6}"
    )


def most_calls_per_core(results: list[LevelResult]) -> int:
    """The highest level such that it and every lower level sent no frame more than 40 ms late."""
    best = 0
    for result in sorted(results, key=lambda r: r.calls):
        if result.late_frames or result.errors or result.frames == 0:
            break
        best = result.calls
    return best


def summary(results: list[LevelResult]) -> list[str]:
    lines = [
        "\nWhere the added latency goes: each stage past its configured provider latency, "
        "p50/p99 in ms (a turn's stages add up to its added latency):",
        f"{'calls':>6} " + " ".join(f"{label:>14}" for label, _ in STAGES),
    ]
    for r in results:
        stages = " ".join(
            f"{f'{r.stages_p50_ms[key]:.1f}/{r.stages_p99_ms[key]:.1f}':>14}" for _, key in STAGES
        )
        lines.append(f"{r.calls:>6} {stages}")
    lines += [
        "\nThe measurement itself: the callers' process (CPU in % of its core, how late it sent "
        "its frames) and other processes on the two cores (% of one core; they disturb the "
        "figures):",
        f"{'calls':>6} {'callers CPU':>12} {'send p99':>9} {'others':>8}",
    ]
    for r in results:
        lines.append(
            f"{r.calls:>6} {r.caller_cpu_pct:>11.0f}% {r.caller_send_p99_ms:>7.1f}ms "
            f"{r.others_cpu_pct:>7.0f}%"
        )
    for r in results:
        for note in r.notes:
            lines.append(f"  {r.calls} calls: {note}")
        if r.no_reply:
            lines.append(f"  {r.calls} calls: {r.no_reply} turns got no reply within 5 s")
        for error in r.errors[:3]:
            lines.append(f"  {r.calls} calls: caller error {error}")
    best = most_calls_per_core(results)
    lines.append(f"\nmost calls per core with no frame more than 40 ms late: {best}")
    above = [r for r in sorted(results, key=lambda r: r.calls) if r.calls > best]
    if above:
        failed = above[0]
        why = (
            f"sent {failed.late_frames} frames more than 40 ms late"
            if failed.late_frames
            else ("had caller errors" if failed.errors else "sent no frames")
        )
        lines.append(f"  (the next level, {failed.calls} calls, {why})")
    else:
        lines.append("  (the highest level run: there may be room for more)")
    at_50 = next((r for r in results if r.calls == 50), None)

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("PASS" if ok else "MISS")

    p50 = None if at_50 is None or at_50.turns == 0 else at_50.added_p50_ms <= 10
    p99 = None if at_50 is None or at_50.turns == 0 else at_50.added_p99_ms <= 40
    lines += [
        "targets:",
        f"  added latency p50 <= 10 ms at 50 calls per core: {verdict(p50)}"
        + (f" ({at_50.added_p50_ms:.1f} ms)" if at_50 else ""),
        f"  added latency p99 <= 40 ms at 50 calls per core: {verdict(p99)}"
        + (f" ({at_50.added_p99_ms:.1f} ms)" if at_50 else ""),
        f"  at least 50 calls per core: {verdict(best >= 50)} ({best})",
    ]
    return lines


def run(
    levels: tuple[int, ...] = LEVELS,
    *,
    seconds: float = 30.0,
    warmup: float = 4.0,
    profile_level: int | None = None,
) -> list[LevelResult]:
    k = first_piece_tokens()
    print(
        "\nVoice service: simulated calls on one core (the callers on another), scripted "
        f"providers: transcriber final {FINAL_DELAY * 1000:.0f} ms after speech, model first "
        f"token {FIRST_TOKEN_DELAY * 1000:.0f} ms then {TOKENS_PER_SECOND:.0f} tokens/s, voice "
        f"first audio {FIRST_AUDIO_DELAY * 1000:.0f} ms."
    )
    print(
        f"The reply's first piece needs k = {k} tokens: configured provider latency "
        f"{provider_latency() * 1000:.0f} ms per turn (subtracted). Each level: {warmup:.0f} s "
        f"warm-up, then {seconds:.0f} s measured. Added latency: caller's end of speech to "
        "the reply's first frame, minus the providers; CPU per call in % of a core; lateness "
        "of every outbound frame.\n"
    )
    run_level(5, seconds=3.0, warmup=2.0, seed=0)  # warm-up: page cache, bytecode
    if profile_level is not None:
        result = run_level(profile_level, seconds=seconds, warmup=warmup, profile=True)
        print(f"cProfile of the service at {profile_level} calls (figures skewed by profiling):")
        print(HEADER)
        print(row(result))
        print(result.profile or "")
        return [result]
    print(HEADER, flush=True)
    results = []
    for calls in levels:
        result = run_level(calls, seconds=seconds, warmup=warmup)
        print(row(result), flush=True)
        results.append(result)
    print("\n".join(summary(results)), flush=True)
    return results
