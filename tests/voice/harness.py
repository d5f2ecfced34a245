"""A whole phone network in one test: the AWS emulator's stack, the API and carrier webhooks on a
loopback port, the carrier simulator (signed webhooks, Media Streams at real-time pace) and the
voice service, with providers a test scripts (fixed latencies, scripted words)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkturo import config
from talkturo.api.app import create_app
from talkturo.carrier.factory import set_carrier
from talkturo.carrier.twilio import TwilioCarrier
from talkturo.local.carrier_sim import CarrierSimulator
from talkturo.local.template import Stack
from talkturo.voice.context import CallContext
from talkturo.voice.providers.scripted import ScriptedModel, ScriptedTranscriber, ToneVoice
from talkturo.voice.server import ServiceOptions, VoiceService
from talkturo.voice.session import CallProviders, SessionServices, SessionSettings
from talkturo.webhooks.asgi import with_carrier_webhooks
from tests.asgi_server import served

TOKEN_SECRET = "voice-secret"


@dataclass
class Scripted:
    """The providers the next call gets (one set per call; tests change them before dialing)."""

    model: ScriptedModel = field(default_factory=ScriptedModel)
    # The simulator's synthetic voice pauses up to ~200 ms between words: a longer end-of-speech
    # delay than a real transcriber's keeps one sentence one turn.
    transcriber: ScriptedTranscriber = field(
        default_factory=lambda: ScriptedTranscriber(final_delay=0.35)
    )
    voice: ToneVoice = field(default_factory=ToneVoice)
    fallback: ToneVoice | None = None
    contexts: list[CallContext] = field(default_factory=list)

    def build(self, context: CallContext, env: dict[str, str]) -> CallProviders:
        self.contexts.append(context)
        return CallProviders(
            llm=self.model,
            transcriber=self.transcriber,
            voice=self.voice,
            fallback_voice=self.fallback,
        )


class VoiceThread:
    """The voice service on its own event loop in a thread."""

    def __init__(self, options: ServiceOptions) -> None:
        self.service = VoiceService(options)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> VoiceThread:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.service.start("127.0.0.1", 0), self.loop)
        self.port = future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.service.drain(5), self.loop).result(timeout=15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@dataclass
class VoiceNetwork:
    sim: CarrierSimulator
    voice: VoiceThread
    scripted: Scripted
    api_url: str


@contextlib.contextmanager
def voice_network(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    *,
    settings: SessionSettings | None = None,
    services: SessionServices | None = None,
    build: Callable[[CallContext, dict[str, str]], CallProviders] | None = None,
) -> Iterator[VoiceNetwork]:
    scripted = Scripted()
    api_app = with_carrier_webhooks(create_app())
    with served(api_app) as api, CarrierSimulator(tts="synthetic") as sim:
        options = ServiceOptions(
            auth_token=lambda: sim.auth_token,
            token_secret=lambda: TOKEN_SECRET,
            public_url="",  # set below, once the port is known
            services=services or SessionServices(),
            settings=settings or SessionSettings(),
            build_providers=build or scripted.build,
        )
        with VoiceThread(options) as voice:
            options.public_url = voice.url
            monkeypatch.setenv("VOICE_SERVICE_URL", voice.url)
            monkeypatch.setenv("PUBLIC_BASE_URL", api)
            monkeypatch.setenv("TWILIO_ACCOUNT_SID", sim.account_sid)
            monkeypatch.setenv("TWILIO_AUTH_TOKEN", sim.auth_token)
            monkeypatch.setenv("VOICE_TOKEN_SECRET", TOKEN_SECRET)
            config.get_settings.cache_clear()
            set_carrier(TwilioCarrier(sim.account_sid, sim.auth_token, api_base_url=sim.url))
            try:
                yield VoiceNetwork(sim, voice, scripted, api)
            finally:
                set_carrier(None)
                config.get_settings.cache_clear()


def wait_for_call_record(
    client: TestClient, headers: dict[str, str], call_id: str, *, timeout: float = 20.0
) -> dict[str, Any]:
    """The call once it has ended and its voice session has saved the transcript."""
    import time

    deadline = time.monotonic() + timeout
    got: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = client.get(f"/v1/calls/{call_id}", headers=headers).json()
        if got.get("status") == "ended" and got.get("transcript_available"):
            return got
        time.sleep(0.1)
    raise AssertionError(f"the call did not end and save in time: {got}")
