"""However a call session ends, it is finalised once: settled, saved, the record closed."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

from talkturo import audio
from talkturo.voice import protocol
from talkturo.voice.providers.scripted import ScriptedModel, ScriptedTranscriber, ToneVoice
from talkturo.voice.session import CallProviders, CallSession, SessionSettings
from tests.voice.memory import RecordingServices, memory_context

START = protocol.Start(stream_sid="MZ" + "1" * 32, call_sid="CA" + "0" * 32, account_sid="AC1")


def _media(index: int) -> str:
    payload = base64.b64encode(audio.SILENT_FRAME).decode()
    return json.dumps(
        {"event": "media", "media": {"payload": payload, "timestamp": str(index * 20)}}
    )


async def _run(
    messages: AsyncIterator[str],
    services: RecordingServices,
    settings: SessionSettings | None = None,
) -> CallSession:
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    session = CallSession(
        context=memory_context(first_message="Hello."),
        start=START,
        send=send,
        receive=messages,
        providers=CallProviders(
            llm=ScriptedModel(), transcriber=ScriptedTranscriber(), voice=ToneVoice()
        ),
        services=services,
        settings=settings or SessionSettings(meter_increment_seconds=60),
    )
    await asyncio.wait_for(session.run(), 10)
    return session


def test_a_dropped_carrier_socket_ends_the_call_cleanly_once() -> None:
    services = RecordingServices()

    async def dropping() -> AsyncIterator[str]:
        for index in range(10):
            yield _media(index)
            await asyncio.sleep(0.02)
        raise ConnectionResetError("the carrier went away")

    session = asyncio.run(_run(dropping(), services))
    assert session.end_reason == "error"
    names = services.names()
    # The end is written before the hang-up, then saved and closed exactly once.
    assert names.count("hang_up") == 1 and names.count("close") == 1 and names.count("save") == 1
    assert names.index("end") < names.index("hang_up") < names.index("save") < names.index("close")
    closed = dict(services.calls)["close"]
    assert closed["end"].ended_reason == "error"
    assert closed["end"].error_message == "the media stream dropped"
    # Settled by the second: one charge, allowed to go below zero for the last seconds.
    assert len(services.charges) == 1 and services.charges[0][2] is True


def test_the_callers_stop_ends_the_call_without_a_hang_up() -> None:
    services = RecordingServices()

    async def stopping() -> AsyncIterator[str]:
        for index in range(5):
            yield _media(index)
            await asyncio.sleep(0.02)
        yield json.dumps({"event": "stop", "stop": {}})

    session = asyncio.run(_run(stopping(), services))
    assert session.end_reason == "caller_hung_up"
    assert "hang_up" not in services.names()
    assert services.names().count("close") == 1


def test_a_failing_save_still_closes_the_call_record() -> None:
    class BrokenSave(RecordingServices):
        async def save(self, context, session):  # type: ignore[no-untyped-def]
            raise OSError("bucket unavailable")

    services = BrokenSave()

    async def stopping() -> AsyncIterator[str]:
        yield _media(0)
        yield json.dumps({"event": "stop", "stop": {}})

    asyncio.run(_run(stopping(), services))
    closed = dict(services.calls)["close"]
    assert closed["recorded"] is False and closed["end"].ended_reason == "caller_hung_up"


def test_the_transcript_is_saved_while_the_call_runs_and_the_last_save_wins() -> None:
    services = RecordingServices()

    async def long_call() -> AsyncIterator[str]:
        for index in range(75):  # 1.5 s of audio
            yield _media(index)
            await asyncio.sleep(0.02)
        yield json.dumps({"event": "stop", "stop": {}})

    settings = SessionSettings(meter_increment_seconds=60, checkpoint_seconds=0.4)
    asyncio.run(_run(long_call(), services, settings))
    names = services.names()
    assert names.count("checkpoint") >= 2, names
    # The greeting was in the transcript already when the call was still running.
    assert any(dict([c])["checkpoint"] for c in services.calls if c[0] == "checkpoint")
    last_checkpoint = max(i for i, name in enumerate(names) if name == "checkpoint")
    assert last_checkpoint < names.index("save") < names.index("close")
