"""One live call: the caller's audio in, the assistant's voice out, everything in between.

Tasks of a session, all on one event loop:
- the receiver: Media Streams messages → recording, voice activity, transcriber, DTMF, marks;
- the listener: transcriber events → turn decisions (reconnects a transcriber that drops);
- the responder (one at a time): the model's streamed reply → speakable pieces → text to speech →
  the playout, then any tool calls and the model again;
- the playout: audio paced to the carrier in 20 ms frames, marks for what was heard;
- the meter: credits drawn while the call is live;
- the watchdog: silence nudges and hang-up, maximum duration, credits, voicemail verdicts.

The caller speaking over the assistant (a barge-in) clears the carrier's audio at once, cancels
the reply in progress and keeps in the transcript only what the caller heard. A failing model or
voice is retried once, then the caller hears a short apology (from the offline voice when the
configured one is the failure). However the call ends, `_finish` runs once: settlement, transcript
and recording saved, the call record closed, the post-call job queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from talkturo.domain.assistant_tools import (
    EndCallTool,
    SchedulingTool,
    TransferCallTool,
    WebhookTool,
    phrase_said,
)
from talkturo.domain.calls import Booking, CallEvent, EndedReason
from talkturo.domain.common import utcnow
from talkturo.logs import logger
from talkturo.voice import protocol
from talkturo.voice.chunker import Chunker
from talkturo.voice.context import CallContext, disclosure_for
from talkturo.voice.effects import SessionServices
from talkturo.voice.metering import Meter
from talkturo.voice.playout import Playout, Segment
from talkturo.voice.providers.base import (
    ChatMessage,
    ChatRequest,
    Finished,
    LanguageModel,
    ProviderError,
    Synthesizer,
    TextDelta,
    ToolCall,
    ToolSpec,
    Transcriber,
    TranscriberOptions,
    TranscriberStream,
)
from talkturo.voice.recording import StereoRecorder
from talkturo.voice.toolbox import tool_specs
from talkturo.voice.transcript import TranscriptLog
from talkturo.voice.turns import TurnDetector, VoiceActivity

Send = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class SessionSettings:
    silence_nudge_seconds: float = 8.0
    silence_hangup_seconds: float = 25.0
    nudge: str = "Are you still there?"
    goodbye_silence: str = "I haven't heard from you, so I'll end the call now. Goodbye."
    goodbye_max_duration: str = "I'm sorry, we've reached the time limit for this call. Goodbye."
    goodbye_no_credits: str = "I'm sorry, I have to end the call now. Goodbye."
    apology: str = "Sorry, I'm having a technical problem. Could you say that again?"
    apology_fatal: str = "Sorry, I'm having a technical problem and have to end the call."
    filler: str = "One moment, please."
    transfer_failed: str = "I'm sorry, I couldn't reach {name}. Is there anything else I can do?"
    # Outbound calls with answering-machine detection: how long to watch for the verdict.
    amd_window_seconds: float = 45.0
    amd_poll_seconds: float = 1.0
    max_tool_rounds: int = 4
    goodbye_wait_seconds: float = 20.0
    transcriber_retries: int = 5
    # Seconds kept before the maximum duration for the goodbye.
    max_duration_margin_seconds: float = 5.0
    meter_increment_seconds: float = 10.0
    # How often the transcript so far is saved while the call runs.
    checkpoint_seconds: float = 30.0


@dataclass
class CallProviders:
    llm: LanguageModel
    transcriber: Transcriber
    voice: Synthesizer
    # Spoken when the configured voice fails (the offline voice), or None.
    fallback_voice: Synthesizer | None = None
    stand_in_notes: list[str] = field(default_factory=list)


def _letters(text: str) -> str:
    """Letters and digits only, case-folded: "Good-bye!" and "goodbye" say the same."""
    return "".join(c for c in text.casefold() if c.isalnum())


@dataclass
class _Reply:
    """The assistant's reply in progress (one model round)."""

    segments: list[Segment] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    started: float | None = None


class CallSession:
    def __init__(
        self,
        *,
        context: CallContext,
        start: protocol.Start,
        send: Send,
        receive: AsyncIterator[str | bytes],
        providers: CallProviders,
        services: SessionServices | None = None,
        settings: SessionSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        resume: dict[str, str] | None = None,
    ) -> None:
        self.context = context
        self.start = start
        self._send_raw = send
        self._receive = receive
        self.providers = providers
        self.services = services or SessionServices()
        self.settings = settings or SessionSettings()
        self.clock = clock
        self.resume = resume or {}
        self.t0 = clock()
        # A call back from a failed transfer continues its transcript and its recording: this
        # stream's time 0 comes after both.
        self.recorder = StereoRecorder()
        recorded_ms = 0
        if context.earlier_recording:
            try:
                recorded_ms = round(self.recorder.continue_from(context.earlier_recording) * 1000)
            except (ValueError, EOFError, wave.Error):
                logger.warning("the earlier recording could not be read; starting anew")
                self.recorder = StereoRecorder()
        earlier = context.earlier_transcript
        offset = max([m.end_ms + 1 for m in earlier] + [recorded_ms])
        self.transcript = TranscriptLog(earlier, offset_ms=offset)
        self.playout = Playout(
            self._send, start.stream_sid, started_at=self.t0, on_frame=self.recorder.assistant
        )
        self.turns = TurnDetector()
        self.vad = VoiceActivity()
        self.meter = Meter(
            account_id=context.account_id,
            call_id=context.call.id,
            stream_sid=start.stream_sid,
            rate_per_minute=context.rate_per_minute,
            started_at=self.t0,
            clock=clock,
            increment_seconds=self.settings.meter_increment_seconds,
            charge=self.services.charge,
        )
        self.bookings: list[Booking] = []
        self.end_reason: EndedReason | None = None
        self.error_message: str | None = None
        self.transferred = False
        self._transferring = False
        self._checkpoint: asyncio.Task[None] | None = None
        self._stt: TranscriberStream | None = None
        self._stt_ready = asyncio.Event()
        self._pending_audio = bytearray()  # while the transcriber reconnects
        self._response: asyncio.Task[None] | None = None
        self._ending_task: asyncio.Task[None] | None = None
        self._ending = False
        self._done = asyncio.Event()
        self._socket_open = True
        self._last_activity = self.t0
        self._nudged = False
        self._user_started: float | None = None
        self._dtmf: list[str] = []
        self._dtmf_at = 0.0
        self._last_reply: tuple[int, _Reply] | None = None  # transcript index, reply
        self._merge_next = False
        self._response_spoke = False  # the reply in progress has sent audio
        self._tools = [t for t in context.assistant.tools if t.enabled]
        # The caller's opt-out: written once per session (a phrase and the model's function
        # both lead here), again at the end if the write failed during the call.
        self._opt_out: asyncio.Task[None] | None = None
        self._opt_out_confirm: asyncio.Task[None] | None = None
        self._opt_out_detail = ""
        self._opt_out_saved = False
        self._finished = False
        # Figures for the benchmark: when each reply's first audio was sent.
        self.reply_first_audio: list[float] = []

    # ------------------------------------------------------------------ helpers
    def now(self) -> float:
        return self.clock() - self.t0

    async def _send(self, message: str) -> None:
        if not self._socket_open:
            return
        try:
            await self._send_raw(message)
        except Exception:  # noqa: BLE001 - any failure of the socket means it is gone
            self._socket_open = False
            self._request_end("error", None, error="the media stream closed")

    def _tool(self, kind: type[Any]) -> Any:
        return next((t for t in self._tools if isinstance(t, kind)), None)

    @property
    def _assistant_busy(self) -> bool:
        return (self._response is not None and not self._response.done()) or (self.playout.speaking)

    # ------------------------------------------------------------------ run
    async def run(self) -> EndedReason:
        tasks: list[asyncio.Task[Any]] = []
        try:
            tasks.append(asyncio.create_task(self.playout.run(), name="playout"))
            tasks.append(asyncio.create_task(self._connect_transcriber(), name="listen"))
            tasks.append(asyncio.create_task(self._watch(), name="watchdog"))
            tasks.append(asyncio.create_task(self._receive_loop(), name="receive"))
            tasks.append(asyncio.create_task(self.meter.run(), name="meter"))
            for note in self.providers.stand_in_notes:
                self.transcript.system(note, self.now())
            with contextlib.suppress(Exception):
                await self.services.mark_connected(self.context)
            await self._opening()
            await self._done.wait()
        finally:
            for task in tasks:
                task.cancel()
            await self._finish(tasks)
        return self.end_reason or "caller_hung_up"

    async def _opening(self) -> None:
        assistant = self.context.assistant
        if self.resume.get("resume") == "transfer_failed":
            name = self.resume.get("transfer_to") or "them"
            await self._say(self.settings.transfer_failed.format(name=name))
            return
        disclosure = disclosure_for(
            self.context.call,
            self.context.render(assistant.ai_disclosure_message),
            enabled=self.context.ai_disclosure,
        )
        first = ""
        if assistant.first_message_mode == "assistant_speaks_first" and assistant.first_message:
            first = self.context.render(assistant.first_message)
        opening = " ".join(part for part in (disclosure, first) if part)
        if opening:
            await self._say(opening)

    # ------------------------------------------------------------------ receiving
    async def _receive_loop(self) -> None:
        got_stop = False
        try:
            async for raw in self._receive:
                try:
                    message = protocol.parse(raw)
                except protocol.ProtocolError as error:
                    logger.warning("media stream message refused", extra={"error": str(error)})
                    continue
                if isinstance(message, protocol.Media):
                    await self._on_audio(message)
                elif isinstance(message, protocol.Mark):
                    self.playout.on_mark(message.name)
                elif isinstance(message, protocol.Dtmf):
                    self._dtmf.append(message.digit)
                    self._dtmf_at = self.clock()
                    self._last_activity = self.clock()
                elif isinstance(message, protocol.Stop):
                    got_stop = True
                    break
        except Exception as error:  # noqa: BLE001 - a broken socket ends the call the same way
            logger.info("media stream closed", extra={"error": repr(error)})
        self._socket_open = False
        if self._transferring:
            return  # the carrier moved the call away: the transfer ends this session
        if got_stop:
            self._request_end("caller_hung_up", None, hang_up=False)
        else:
            self._request_end("error", None, error="the media stream dropped", hang_up=True)

    async def _on_audio(self, media: protocol.Media) -> None:
        frame = media.payload
        self.recorder.caller(media.timestamp_ms, frame)
        now = self.clock()
        self.turns.on_frame(self.vad.is_speech(frame), now)
        if self._stt is not None and self._stt_ready.is_set():
            try:
                await self._stt.send(frame)
            except ProviderError:
                self._stt_ready.clear()
        else:
            self._pending_audio.extend(frame)
            del self._pending_audio[: max(0, len(self._pending_audio) - 8000 * 5)]
        self._after_input(now)

    def _after_input(self, now: float) -> None:
        if self._ending:
            return
        if self.turns.take_onset():
            self._user_started = self._user_started or now
            self._last_activity = now
            self._nudged = False
            if self._assistant_busy:
                asyncio.get_running_loop().create_task(self._barge_in())
        turn = self.turns.end_of_turn(now)
        if turn is not None:
            start = (self._user_started or now) - self.t0
            self._user_started = None
            self._last_activity = now
            self._on_user_turn(turn.text, start, now - self.t0)

    # ------------------------------------------------------------------ transcriber
    def _transcriber_options(self) -> TranscriberOptions:
        config = self.context.assistant.transcriber
        return TranscriberOptions(
            model=config.model, language=config.language, keyterms=tuple(config.keyterms)
        )

    async def _connect_transcriber(self) -> None:
        """Open the transcriber and read its events; reopen it when it drops."""
        failures = 0
        while not self._done.is_set():
            try:
                self._stt = await self.providers.transcriber.open(self._transcriber_options())
                if self._pending_audio:
                    await self._stt.send(bytes(self._pending_audio))
                    self._pending_audio.clear()
                self._stt_ready.set()
                failures = 0
                async for event in self._stt.events():
                    self.turns.on_transcriber(event, self.clock())
                    self._after_input(self.clock())
                return
            except ProviderError as error:
                self._stt_ready.clear()
                failures += 1
                logger.warning(
                    "transcriber dropped", extra={"error": str(error), "attempt": failures}
                )
                if self._stt is not None:
                    with contextlib.suppress(Exception):
                        await self._stt.close()
                    self._stt = None
                if not error.retryable or failures > self.settings.transcriber_retries:
                    self.transcript.system(f"transcriber failed: {error.message}", self.now())
                    self._request_end(
                        "error", self.settings.apology_fatal, error="the transcriber failed"
                    )
                    return
                await asyncio.sleep(min(2.0, 0.2 * 2 ** (failures - 1)))

    # ------------------------------------------------------------------ turns
    def _on_user_turn(self, text: str, start: float, end: float) -> None:
        if self._opt_out is not None:
            # Heard, not answered: the call is ending with the opt-out's confirmation.
            self.transcript.user(text, start, end)
            return
        merge, self._merge_next = self._merge_next, False
        if self._response is not None and not self._response.done():
            self._response.cancel()
            merge = True
        if merge:
            # The caller went on before hearing a reply: one longer turn.
            previous = self.transcript.messages[-1] if self.transcript.messages else None
            if previous is not None and previous.role == "user":
                self.transcript.messages.pop()
                text = f"{previous.text} {text}"
                start = (previous.start_ms - self.transcript.offset_ms) / 1000
        self.transcript.user(text, start, end)
        said = phrase_said(text, self.context.assistant.opt_out.phrases)
        if said is not None:
            self._start_opt_out(f'the caller said "{said}"')
            return
        end_call = self._tool(EndCallTool)
        if end_call is not None:
            said = _letters(text)
            if any(_letters(phrase) in said for phrase in end_call.config.phrases):
                closing = end_call.config.closing_message
                self._request_end(
                    "assistant_ended", self.context.render(closing) if closing else None
                )
                return
        self._response_spoke = False
        self._response = asyncio.get_running_loop().create_task(self._respond())

    async def _barge_in(self) -> None:
        if self._ending:
            return
        at = self.clock()
        thinking = self._response is not None and not self._response.done()
        if self._response is not None and thinking:
            self._response.cancel()
            with contextlib.suppress(BaseException):
                await self._response
        cut = await self.playout.clear()
        if thinking and not self._response_spoke:
            self._merge_next = True
        self.recorder.erase_assistant_after(at - self.t0)
        if self._last_reply is not None:
            index, reply = self._last_reply
            if any(s in cut or not s.played for s in reply.segments):
                heard = " ".join(t for t in (s.heard_text(at) for s in reply.segments) if t)
                message = self.transcript.messages[index]
                self.transcript.messages[index] = message.model_copy(
                    update={
                        "text": heard,
                        "interrupted": True,
                        "end_ms": self.transcript.offset_ms + round((at - self.t0) * 1000),
                    }
                )
            self._last_reply = None

    # ------------------------------------------------------------------ replying
    def _tool_specs(self) -> tuple[ToolSpec, ...]:
        return tool_specs(self._tools)

    def _system_prompt(self) -> str:
        prompt = self.context.render(self.context.assistant.system_prompt)
        return (
            f"{prompt}\n\nYou are speaking on a phone call: answer in short spoken sentences, "
            "without lists, markdown or emoji."
        )

    def _request(self) -> ChatRequest:
        llm = self.context.assistant.llm
        return ChatRequest(
            model=llm.model,
            system_prompt=self._system_prompt(),
            messages=self.transcript.chat_history(),
            tools=self._tool_specs(),
            temperature=llm.temperature,
            max_tokens=llm.max_tokens,
        )

    async def _respond(self) -> None:
        """Model rounds until a reply without tool calls (or a tool that ends the session)."""
        try:
            for _round in range(self.settings.max_tool_rounds):
                reply, calls = await self._model_round()
                if not calls:
                    return
                spoke = bool(reply.text)
                for call in calls:
                    if self._ending:
                        return
                    if not spoke and call.name not in ("end_call", "transfer_call", "opt_out"):
                        await self._say(self.settings.filler)
                        spoke = True
                    started = self.now()
                    result = await self._run_tool(call)
                    if self.transferred:
                        return  # logged and saved before the call left (see _transfer)
                    self.transcript.tool(call, result, started, self.now())
                    if self._ending or self._opt_out is not None:
                        return
        except asyncio.CancelledError:
            raise
        except ProviderError as error:
            logger.warning("reply failed", extra={"error": str(error)})
            self.transcript.system(f"reply failed: {error.message}", self.now())
            await self._say(self.settings.apology)
        except Exception as error:  # noqa: BLE001 - never dead air, whatever broke
            logger.exception("reply broke", extra={"id": self.context.call.id})
            self.transcript.system(f"reply failed: {type(error).__name__}", self.now())
            await self._say(self.settings.apology)

    async def _model_round(self) -> tuple[_Reply, list[ToolCall]]:
        """One streamed model reply spoken as it arrives; retried once if the model fails
        before saying anything."""
        request = self._request()
        for attempt in (1, 2):
            reply = _Reply()
            calls: list[ToolCall] = []
            pieces: asyncio.Queue[str | None] = asyncio.Queue()
            speaker = asyncio.get_running_loop().create_task(self._speak_pieces(pieces, reply))
            try:
                chunker = Chunker()
                async for event in self.providers.llm.stream(request):
                    if isinstance(event, TextDelta):
                        for piece in chunker.feed(event.text):
                            pieces.put_nowait(piece)
                    elif isinstance(event, ToolCall):
                        calls.append(event)
                    elif isinstance(event, Finished):
                        break
                for piece in chunker.flush():
                    pieces.put_nowait(piece)
            except ProviderError:
                pieces.put_nowait(None)
                await speaker
                if attempt == 2 or reply.text:
                    self._log_reply(reply, calls)
                    raise
                continue
            except BaseException:
                speaker.cancel()
                self._log_reply(reply, calls)
                raise
            pieces.put_nowait(None)
            try:
                await speaker
            except BaseException:
                self._log_reply(reply, calls)
                raise
            self._log_reply(reply, calls)
            return reply, calls
        raise AssertionError("unreachable")

    def _log_reply(self, reply: _Reply, calls: list[ToolCall]) -> None:
        text = " ".join(reply.text)
        if not text and not calls:
            return
        start = (reply.started - self.t0) if reply.started else self.now()
        # Audio still queued for the carrier plays after what was sent: the reply ends then.
        ends = [s.end_due for s in reply.segments if s.end_due is not None]
        if reply.segments:
            ends.append(self.playout.playing_until + self.playout.queued_seconds)
        end = (max(ends) - self.t0) if ends else self.now()
        self.transcript.assistant(text, start, end, tool_calls=calls)
        if reply.segments:
            self._last_reply = (len(self.transcript.messages) - 1, reply)

    async def _speak_pieces(self, pieces: asyncio.Queue[str | None], reply: _Reply) -> None:
        while True:
            piece = await pieces.get()
            if piece is None:
                return
            await self._synthesize(piece, reply)

    async def _synthesize(self, text: str, reply: _Reply) -> None:
        """One piece through the voice (retried once, then the fallback voice)."""
        voices = [self.providers.voice, self.providers.voice]
        if self.providers.fallback_voice is not None:
            voices.append(self.providers.fallback_voice)
        for index, voice in enumerate(voices):
            segment = self.playout.new_segment(text)
            got_audio = False
            try:
                async for chunk in voice.synthesize(text):
                    if not got_audio:
                        # From its first audio on, the piece belongs to the reply: a barge-in
                        # during it must find it to know what the caller heard.
                        got_audio = True
                        self._response_spoke = True
                        reply.segments.append(segment)
                        reply.text.append(text)
                        if reply.started is None:
                            reply.started = self.clock()
                            self.reply_first_audio.append(reply.started)
                    self.playout.add_audio(segment, chunk)
            except asyncio.CancelledError:
                # Cut short (barge-in, the caller went on, the call ending): what was queued
                # plays out or was cleared; nothing is left waiting for the rest.
                if got_audio:
                    self.playout.finish_segment(segment)
                else:
                    self.playout.drop(segment)
                raise
            except ProviderError as error:
                logger.warning("voice failed", extra={"error": str(error), "attempt": index + 1})
                if not got_audio:
                    self.playout.drop(segment)
                    continue
                # Part of the piece was spoken: the rest is lost, not repeated.
            self.playout.finish_segment(segment)
            return
        self.transcript.system("the voice failed; a piece of the reply was not spoken", self.now())

    async def _say(self, text: str) -> None:
        """Speak a fixed line (greeting, nudge, goodbye) and log it."""
        reply = _Reply()
        chunker = Chunker()
        for piece in [*chunker.feed(text), *chunker.flush()]:
            await self._synthesize(piece, reply)
        self._log_reply(reply, [])

    # ------------------------------------------------------------------ tools
    def _call_meta(self) -> dict[str, str]:
        call = self.context.call
        meta = {
            "id": call.id,
            "assistant_id": call.assistant_id,
            "direction": call.direction,
            "from": call.from_number,
            "to": call.to_number,
            "timezone": self.context.timezone,
        }
        if call.contact_id:
            meta["contact_id"] = call.contact_id
        return meta

    async def _run_tool(self, call: ToolCall) -> str:
        try:
            result = await self._dispatch(call)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a tool failure is the model's to handle
            logger.exception("tool failed", extra={"tool": call.name})
            result = {"error": f"the tool failed: {type(error).__name__}"}
        return json.dumps(result, default=str)[:8000]

    async def _dispatch(self, call: ToolCall) -> dict[str, Any]:
        from talkturo.voice.tools import scheduling, webhook

        if call.name == "end_call":
            tool = self._tool(EndCallTool)
            if tool is None:
                return {"error": "end_call is not enabled"}
            closing = tool.config.closing_message
            await self.playout.idle.wait()
            self._request_end("assistant_ended", self.context.render(closing) if closing else None)
            return {"ok": True}
        if call.name == "transfer_call":
            return await self._transfer(call)
        if call.name == "opt_out":
            # Shielded: a barge-in cancels the reply, never the do-not-call write.
            await asyncio.shield(self._start_opt_out("the assistant's opt_out function"))
            return {"ok": True, "do_not_call": self._opt_out_saved}
        for tool in self._tools:
            if isinstance(tool, WebhookTool) and webhook.spec_of(tool.config).name == call.name:
                return await self.services.webhook(tool, call.arguments, self._call_meta())
            if isinstance(tool, SchedulingTool) and call.name in {
                spec.name for spec in scheduling.specs(tool.config)
            }:
                result, booking = await self.services.scheduling(
                    tool, call.name, call.arguments, self._call_meta()
                )
                if booking is not None:
                    self.bookings.append(booking)
                return result
        return {"error": f"no tool named {call.name}"}

    async def _transfer(self, call: ToolCall) -> dict[str, Any]:
        tool: TransferCallTool | None = self._tool(TransferCallTool)
        if tool is None:
            return {"error": "transfer_call is not enabled"}
        names = [d.name for d in tool.config.destinations]
        name = str(call.arguments.get("destination") or names[0])
        if name not in names:
            return {"error": f"unknown destination {name!r}; one of {names}"}
        brief = ""
        if tool.config.mode == "warm":
            intro = self.context.render(tool.config.warm_intro or "")
            brief = f"{intro} {await self._summary()}".strip()
        await self.playout.idle.wait()  # let the caller hear "transferring you"
        if not self.services.can_transfer(self.context):
            return {"error": "the call cannot be transferred (no carrier call)"}
        # The transcript is saved before the carrier moves the call: a transfer that fails
        # comes back as a new media stream, whose session continues this transcript.
        result = {"ok": True, "transferred_to": name}
        logged = len(self.transcript.messages)
        self.transcript.tool(call, json.dumps(result), self.now(), self.now())
        self.transcript.system(f"transferred ({tool.config.mode}) to {name}", self.now())
        self._transferring = True  # the stream closing now is the transfer, not a drop
        try:
            await self._checkpoint_done()
            await self.services.save(self.context, self)
            await self.services.transfer(self.context, tool, name, brief)
        except Exception as error:  # noqa: BLE001 - the carrier refused: the call goes on
            logger.warning("transfer failed", extra={"error": repr(error)})
            self._transferring = False
            del self.transcript.messages[logged:]
            if not self._socket_open:
                self._request_end("error", None, error="the media stream dropped")
            return {"error": f"the transfer to {name} failed; tell the caller and carry on"}
        self.transferred = True
        self._request_end("transferred", None, hang_up=False)
        return result

    # ------------------------------------------------------------------ opt-out
    def _start_opt_out(self, detail: str) -> asyncio.Task[None]:
        """Mark the caller do-not-call now, then confirm and end the call: once, whichever path
        (a phrase, the model's function) asked first. Neither task belongs to a reply, so a
        barge-in cannot cancel them."""
        if self._opt_out is None:
            loop = asyncio.get_running_loop()
            self._opt_out_detail = detail
            self._opt_out = loop.create_task(self._write_opt_out())
            self._opt_out_confirm = loop.create_task(self._confirm_opt_out(self._opt_out))
        return self._opt_out

    async def _write_opt_out(self) -> None:
        try:
            contact_id = await self.services.opt_out(self.context, self._opt_out_detail)
        except Exception:  # noqa: BLE001 - tried again when the session closes
            logger.exception("the opt-out could not be saved", extra={"id": self.context.call.id})
            return
        self._opt_out_saved = True
        marked = self.services.opt_out_note(contact_id)
        self.transcript.system(f"opted out ({self._opt_out_detail}): {marked}", self.now())

    async def _confirm_opt_out(self, opting: asyncio.Task[None]) -> None:
        """Once the write is done (or failed, to be tried again): the confirmation, then the end."""
        with contextlib.suppress(Exception):
            await asyncio.shield(opting)
        with contextlib.suppress(TimeoutError):  # what is playing finishes first
            async with asyncio.timeout(self.settings.goodbye_wait_seconds):
                await self.playout.idle.wait()
        confirmation = self.context.render(self.context.assistant.opt_out.confirmation)
        self._request_end("assistant_ended", confirmation)

    async def _settle_opt_out(self) -> None:
        if self._opt_out is None:
            return
        with contextlib.suppress(BaseException):
            await self._opt_out
        if not self._opt_out_saved:
            await self._write_opt_out()

    async def _summary(self) -> str:
        """A one-sentence summary of the call so far for the person taking it over."""
        lines = [
            f"{m.role}: {m.text}"
            for m in self.transcript.messages
            if m.role in ("user", "assistant")
        ]
        request = ChatRequest(
            model=self.context.assistant.llm.model,
            system_prompt="Summarise this phone call in one short sentence for a colleague who "
            "is about to take it over. Only the summary.",
            messages=(ChatMessage(role="user", text="\n".join(lines[-30:]) or "(nothing yet)"),),
            temperature=0.2,
            max_tokens=80,
        )
        parts: list[str] = []
        try:
            async with asyncio.timeout(6):
                async for event in self.providers.llm.stream(request):
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
        except (ProviderError, TimeoutError):
            last = [m.text for m in self.transcript.messages if m.role == "user"][-2:]
            return ("The caller said: " + " ".join(last)) if last else ""
        return "".join(parts).strip()

    # ------------------------------------------------------------------ watching
    async def _watch(self) -> None:
        settings = self.settings
        telephony = self.context.assistant.telephony
        call = self.context.call
        amd_open = (
            call.direction == "outbound"
            and telephony.voicemail.detect
            and call.answered_by is None
            and not self.resume
        )
        next_amd = self.clock() + settings.amd_poll_seconds
        next_checkpoint = self.clock() + settings.checkpoint_seconds
        limit = telephony.max_call_duration_seconds - settings.max_duration_margin_seconds
        while not self._done.is_set():
            await asyncio.sleep(0.25)
            if self._ending or self._transferring:
                continue
            now = self.clock()
            if now >= next_checkpoint and (self._checkpoint is None or self._checkpoint.done()):
                next_checkpoint = now + settings.checkpoint_seconds
                self._checkpoint = asyncio.get_running_loop().create_task(
                    self.services.checkpoint(self.context, list(self.transcript.messages))
                )
            if self.meter.exhausted.is_set():
                self._request_end("no_credits", settings.goodbye_no_credits)
                continue
            if now - self.t0 >= limit:
                self._request_end("max_duration", settings.goodbye_max_duration)
                continue
            if self._dtmf and now - self._dtmf_at >= 1.0 and not self.turns.has_words:
                digits, self._dtmf = "".join(self._dtmf), []
                at = now - self.t0
                self._on_user_turn(f"[The caller pressed {digits} on the keypad]", at - 1, at)
                continue
            if amd_open and now >= next_amd:
                next_amd = now + settings.amd_poll_seconds
                if now - self.t0 > settings.amd_window_seconds:
                    amd_open = False
                else:
                    verdict = None
                    with contextlib.suppress(Exception):
                        verdict = await self.services.answered_by(self.context)
                    if verdict is not None:
                        amd_open = False
                        if verdict == "machine":
                            await self._voicemail()
                            continue
            # The caller's last words still being transcribed are no silence to nudge over.
            idle = not (
                self._assistant_busy
                or self.turns.speaking
                or self.turns.has_words
                or self.turns.awaiting_words(now)
            )
            if not idle:
                self._last_activity = max(self._last_activity, now)
                continue
            quiet = now - max(self._last_activity, self.playout.playing_until)
            if quiet >= settings.silence_hangup_seconds:
                self._request_end("silence_timeout", settings.goodbye_silence)
            elif quiet >= settings.silence_nudge_seconds and not self._nudged:
                self._nudged = True
                await self._say(settings.nudge)

    async def _voicemail(self) -> None:
        voicemail = self.context.assistant.telephony.voicemail
        self.transcript.system("answering machine detected", self.now())
        if voicemail.action == "leave_message" and voicemail.message:
            if self._response is not None and not self._response.done():
                self._response.cancel()
            await self.playout.clear()
            self._request_end("voicemail", self.context.render(voicemail.message))
        else:
            self._request_end("voicemail", None)

    # ------------------------------------------------------------------ ending
    def _request_end(
        self,
        reason: EndedReason,
        goodbye: str | None,
        *,
        error: str | None = None,
        hang_up: bool = True,
    ) -> None:
        if self._ending:
            return
        self._ending = True
        self.end_reason = reason
        self.error_message = error
        self._ending_task = asyncio.get_running_loop().create_task(
            self._end(goodbye, hang_up=hang_up)
        )

    async def _end(self, goodbye: str | None, *, hang_up: bool) -> None:
        current = asyncio.current_task()
        if self._response is not None and self._response is not current:
            self._response.cancel()
        try:
            if goodbye and self._socket_open:
                await self._say(goodbye)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.goodbye_wait_seconds):
                        await self.playout.idle.wait()
            if hang_up and self.context.call.carrier_sid:
                try:
                    await self.services.record_end(self.context, self._end_event())
                except Exception as error:  # noqa: BLE001 - written again when the session closes
                    logger.warning("recording the end failed", extra={"error": repr(error)})
                try:
                    await self.services.hang_up(self.context.call.carrier_sid)
                except Exception as error:  # noqa: BLE001 - the call may already be over
                    logger.warning("hang-up failed", extra={"error": repr(error)})
        finally:
            self._done.set()

    async def _checkpoint_done(self) -> None:
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await self._checkpoint

    def _end_event(self, at: float | None = None) -> CallEvent:
        return CallEvent(
            at=utcnow(),
            status="ended",
            outcome="answered",
            ended_reason=self.end_reason or "caller_hung_up",
            duration_seconds=math.ceil((at if at is not None else self.clock()) - self.t0),
            error_message=self.error_message,
        )

    async def _finish(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Once, whatever ended the call: settle, save, close the record."""
        if self._finished:
            return
        self._finished = True
        ended_at = self.clock()
        for task in [*tasks, self._response, self._ending_task, self._opt_out_confirm]:
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        for task in [*tasks, self._response]:
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        for closer in (self._stt, self.providers.voice, self.providers.fallback_voice):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer.close()
        charge = self.meter.drawn  # what the ledger surely holds, should settling fail
        try:
            charge = await self.meter.settle(ended_at)
        except Exception:  # noqa: BLE001 - recorded below with what was drawn
            logger.exception("settlement failed", extra={"id": self.context.call.id})
        await self._settle_opt_out()  # before the record closes: no campaign dials them again
        recorded = self.context.assistant.telephony.recording_enabled
        await self._checkpoint_done()  # an older transcript must not land after the last one
        if not self.transferred:  # a transferred call saved before it left
            try:
                await self.services.save(self.context, self)
            except Exception:  # noqa: BLE001
                logger.exception("saving the transcript failed", extra={"id": self.context.call.id})
                recorded = False
        end = None if self.transferred else self._end_event(ended_at)
        try:
            await self.services.close(
                self.context,
                stream_sid=self.start.stream_sid,
                charge=charge,
                billed_seconds=self.meter.billed_seconds,
                recorded=recorded,
                bookings=self.bookings,
                end=end,
            )
        except Exception:  # noqa: BLE001
            logger.exception("closing the call failed", extra={"id": self.context.call.id})
        logger.info(
            "call session over",
            extra={"id": self.context.call.id, "reason": self.end_reason, "charge": str(charge)},
        )
