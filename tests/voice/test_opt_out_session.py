"""The opt-out and the AI disclosure inside one call session held in memory: what the session
asks its services for, and what it says."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from talkturo import audio
from talkturo.domain.assistants import DEFAULT_AI_DISCLOSURE
from talkturo.voice import protocol
from talkturo.voice.context import CallContext, disclosure_for
from talkturo.voice.providers.scripted import ScriptedModel, ScriptedTranscriber, ToneVoice
from talkturo.voice.session import CallProviders, CallSession, SessionSettings
from tests.unit.test_voice_loop_parts import _speech_like
from tests.voice.memory import RecordingServices, memory_context

START = protocol.Start(stream_sid="MZ" + "2" * 32, call_sid="CA" + "0" * 32, account_sid="AC1")
CAMPAIGN_ID = "cmp_01MEMORY000000000000000000"


class OptOutServices(RecordingServices):
    """Records opt-outs; each waits for `release`, and the first `failures` of them fail."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.failures = failures

    async def opt_out(self, context: CallContext, detail: str) -> str | None:
        self.calls.append(("opt_out", detail))
        await self.release.wait()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the table is unavailable")
        return "ct_01MEMORY00000000000000000"

    def spoken(self) -> list[str]:
        saved = dict(self.calls)["save"]
        return [m.text for m in saved if m.role == "assistant"]


def _messages(chunk: bytes) -> list[str]:
    return [
        json.dumps({"event": "media", "media": {"payload": base64.b64encode(f).decode()}})
        for f in audio.frames(chunk)
    ]


async def _caller(parts: list[bytes | asyncio.Event], marks: list[str]) -> AsyncIterator[str]:
    """Audio at real-time pace, with the marks the session sent played back as a carrier does;
    an Event in `parts` is set when the caller gets there."""
    for part in parts:
        if isinstance(part, asyncio.Event):
            part.set()
            continue
        for message in _messages(part):
            while marks:
                yield json.dumps({"event": "mark", "mark": {"name": marks.pop(0)}})
            yield message
            await asyncio.sleep(audio.FRAME_MS / 1000)
    yield json.dumps({"event": "stop", "stop": {}})


async def _run(
    context: CallContext,
    services: RecordingServices,
    lines: list[str],
    parts: list[bytes | asyncio.Event],
) -> CallSession:
    marks: list[str] = []

    async def send(text: str) -> None:
        message = json.loads(text)
        if message["event"] == "mark":
            marks.append(message["mark"]["name"])

    session = CallSession(
        context=context,
        start=START,
        send=send,
        receive=_caller(parts, marks),
        providers=CallProviders(
            llm=ScriptedModel(), transcriber=ScriptedTranscriber(lines=lines), voice=ToneVoice()
        ),
        services=services,
        settings=SessionSettings(meter_increment_seconds=60),
    )
    await asyncio.wait_for(session.run(), 20)
    return session


def test_saying_it_again_while_the_opt_out_is_written_writes_it_once() -> None:
    async def scenario() -> tuple[CallSession, OptOutServices]:
        services = OptOutServices()
        parts: list[Any] = [
            audio.silence(0.5),
            _speech_like(0.6),
            audio.silence(0.6),  # the first turn ends: the write starts and waits
            _speech_like(0.6),
            audio.silence(0.6),  # the second turn arrives while it waits
            services.release,
            audio.silence(3),
        ]
        lines = ["Stop calling me", "I said take me off your list"]
        session = await _run(memory_context(), services, lines, parts)
        return session, services

    session, services = asyncio.run(scenario())
    assert [c for c in services.calls if c[0] == "opt_out"] == [
        ("opt_out", 'the caller said "stop calling me"')
    ]
    assert session.end_reason == "assistant_ended"
    saved = dict(services.calls)["save"]
    assert [m.text for m in saved if m.role == "user"] == [
        "Stop calling me",
        "I said take me off your list",
    ]
    assert services.spoken()[-1] == "Understood. You won't be called again. Goodbye."
    # The second turn was heard, not answered: the model was never asked.
    assert session.providers.llm.requests == []  # type: ignore[attr-defined]


def test_an_opt_out_that_fails_during_the_call_is_written_again_before_it_closes() -> None:
    async def scenario() -> OptOutServices:
        services = OptOutServices(failures=1)
        services.release.set()
        parts: list[Any] = [audio.silence(0.5), _speech_like(0.6), audio.silence(3)]
        await _run(memory_context(), services, ["Please do not call me again"], parts)
        return services

    services = asyncio.run(scenario())
    names = services.names()
    assert names.count("opt_out") == 2
    assert names.index("opt_out") < names.index("close")
    assert max(i for i, n in enumerate(names) if n == "opt_out") < names.index("close")
    # The caller heard the confirmation all the same.
    assert services.spoken()[-1] == "Understood. You won't be called again. Goodbye."


def _opening(context: CallContext) -> list[str]:
    async def scenario() -> OptOutServices:
        services = OptOutServices()
        await _run(context, services, [], [audio.silence(1)])
        return services

    return asyncio.run(scenario()).spoken()


def _campaign_call(context: CallContext) -> CallContext:
    context.call = context.call.model_copy(update={"campaign_id": CAMPAIGN_ID, "attempt": 1})
    return context


def test_a_campaign_call_opens_with_the_ai_disclosure_then_the_first_message() -> None:
    context = _campaign_call(memory_context("outbound", first_message="Hi, this is Ada."))
    assert _opening(context) == [f"{DEFAULT_AI_DISCLOSURE} Hi, this is Ada."]


def test_the_disclosure_follows_the_assistants_wording_and_needs_no_first_message() -> None:
    context = _campaign_call(
        memory_context(
            "outbound",
            first_message="",
            ai_disclosure_message="Hi {{account.name}} here: you are talking to an AI.",
        )
    )
    assert _opening(context) == ["Hi Memory Ltd here: you are talking to an AI."]


def test_calls_outside_campaigns_open_without_a_disclosure() -> None:
    context = memory_context("outbound", first_message="Hi, this is Ada.")
    assert _opening(context) == ["Hi, this is Ada."]
    assert disclosure_for(context.call) is None
    campaign = _campaign_call(context).call
    assert disclosure_for(campaign) == DEFAULT_AI_DISCLOSURE
    assert disclosure_for(campaign, enabled=False) is None


def test_a_campaign_that_turned_the_disclosure_off_opens_with_the_first_message() -> None:
    context = _campaign_call(memory_context("outbound", first_message="Hi, this is Ada."))
    context.ai_disclosure = False
    assert _opening(context) == ["Hi, this is Ada."]
