"""The voice service: a WebSocket server the carrier's media streams connect to.

- `GET /health`: 200 `ok`, or 503 `draining` once SIGTERM arrived (the load balancer then stops
  sending new calls here).
- `/media` (WebSocket, Twilio Media Streams): the upgrade request's X-Twilio-Signature is
  checked against the URL as the carrier called it (the public `VOICE_SERVICE_URL` + path, no
  parameters), keyed with the carrier's auth token: 403 otherwise. Then the stream's `start`
  message must carry a token (a <Parameter> of the TwiML) signed by the platform, naming the
  call; the call's context is loaded and a `CallSession` runs until the call ends. A test
  call's stream (its record has a `test_run_id`; services.test_calls) comes from a simulated
  caller, not the carrier: its session runs with `TestCallServices`.

On SIGTERM the service stops taking new streams and waits for live calls to finish (at most
`VOICE_DRAIN_SECONDS`), then exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from typing import Any

from talkturo import tokens
from talkturo.config import LOCAL_VOICE_PORT, get_settings
from talkturo.logs import logger
from talkturo.voice import protocol
from talkturo.voice.context import CallContext, load_context
from talkturo.voice.effects import TestCallServices
from talkturo.voice.providers.base import ProviderError, VoiceOptions
from talkturo.voice.providers.registry import Providers, warm_up_offline_speech
from talkturo.voice.session import CallProviders, CallSession, SessionServices, SessionSettings

START_TIMEOUT_SECONDS = 10.0
DEFAULT_DRAIN_SECONDS = 3600.0
MEDIA_PATH = "/media"
HEALTH_PATH = "/health"


@dataclass
class ServiceOptions:
    """How the service checks what connects to it, and what it builds calls with."""

    # The carrier's auth token (signature on the upgrade request); None: not checked.
    auth_token: Callable[[], str | None]
    token_secret: Callable[[], str]
    public_url: str  # the service's base URL as the carrier calls it (ws:// or wss://)
    provider_env: Callable[[], dict[str, str]] = field(default=lambda: dict(os.environ))
    services: SessionServices = field(default_factory=SessionServices)
    # A test call's (services.test_calls): no carrier, no credits, no contact marked.
    test_services: SessionServices = field(default_factory=TestCallServices)
    settings: SessionSettings = field(default_factory=SessionSettings)
    build_providers: Callable[[CallContext, dict[str, str]], CallProviders] | None = None
    # (account id, call id) → the call's context; blocking (run in a worker thread).
    load_context: Callable[[str, str], CallContext] = load_context


def build_providers(context: CallContext, env: dict[str, str]) -> CallProviders:
    """The call's adapters from its assistant and the keys; offline stand-ins are noted."""
    from talkturo.voice.providers.tts.offline import EspeakSynthesizer

    registry = Providers(env)
    assistant = context.assistant
    options = VoiceOptions(
        model=assistant.voice.model,
        voice_id=assistant.voice.voice_id,
        speed=assistant.voice.speed,
        language=assistant.transcriber.language,
    )
    llm = registry.language_model(assistant.llm.provider)
    transcriber = registry.transcriber(assistant.transcriber.provider)
    voice = registry.synthesizer(assistant.voice.provider, options)
    fallback = None if isinstance(voice, EspeakSynthesizer) else EspeakSynthesizer(options)
    notes = [
        f"{s.layer}: {s.label} stands in for {s.provider} (no provider key configured)"
        for s in registry.stand_ins
    ]
    return CallProviders(
        llm=llm, transcriber=transcriber, voice=voice, fallback_voice=fallback, stand_in_notes=notes
    )


def signature_url(public_url: str, path: str) -> str:
    return public_url.rstrip("/") + path


class VoiceService:
    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        self.draining = False
        self.sessions: set[asyncio.Task[Any]] = set()
        self._server: Any = None
        self.stopped = asyncio.Event()

    # ------------------------------------------------------------------ HTTP side
    def _process_request(self, connection: Any, request: Any) -> Any:
        path = request.path.split("?", 1)[0]
        if path == HEALTH_PATH:
            if self.draining:
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path != MEDIA_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if self.draining:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
        auth_token = self.options.auth_token()
        if auth_token:
            from twilio.request_validator import RequestValidator

            signature = request.headers.get("X-Twilio-Signature", "")
            url = signature_url(self.options.public_url, request.path)
            if not signature or not RequestValidator(auth_token).validate(url, {}, signature):
                logger.warning("media stream with a bad or missing signature")
                return connection.respond(HTTPStatus.FORBIDDEN, "forbidden\n")
        return None

    # ------------------------------------------------------------------ streams
    async def _handle(self, connection: Any) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.sessions.add(task)
        try:
            await self._stream(connection)
        finally:
            if task is not None:
                self.sessions.discard(task)

    async def _stream(self, connection: Any) -> None:
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                start = await self._await_start(connection)
        except (TimeoutError, protocol.ProtocolError, ConnectionError) as error:
            logger.warning("media stream without a start", extra={"error": repr(error)})
            await connection.close(1008, "expected a start message")
            return
        except Exception as error:  # noqa: BLE001 - the socket closed before the start
            logger.info("media stream closed before its start", extra={"error": repr(error)})
            return
        try:
            claims = tokens.verify(start.parameters.get("token", ""), self.options.token_secret())
        except tokens.InvalidToken as error:
            logger.warning("media stream with a bad token", extra={"error": str(error)})
            await connection.close(1008, "bad token")
            return
        account_id, call_id = str(claims.get("account", "")), str(claims.get("call", ""))
        try:
            context = await asyncio.to_thread(self.options.load_context, account_id, call_id)
        except Exception:  # noqa: BLE001 - the call or its assistant is gone
            logger.exception("call context could not be loaded", extra={"id": call_id})
            await connection.close(1011, "call not found")
            return
        call = context.call
        if call.status == "ended" or (
            call.carrier_sid and start.call_sid and call.carrier_sid != start.call_sid
        ):
            logger.warning("media stream for an ended or other call", extra={"id": call_id})
            await connection.close(1008, "not this call")
            return
        if not call.carrier_sid and start.call_sid and not call.is_test:
            context.call = call.model_copy(update={"carrier_sid": start.call_sid})
        build = self.options.build_providers or build_providers
        try:
            providers = build(context, self.options.provider_env())
        except ProviderError as error:
            logger.error("call cannot start: %s", error, extra={"id": call_id})
            await self._refuse(context, start, str(error))
            await connection.close(1011, "provider not configured")
            return
        resume = {k: str(v) for k, v in claims.items() if k in ("resume", "transfer_to")}
        session = CallSession(
            context=context,
            start=start,
            send=connection.send,
            receive=connection,
            providers=providers,
            services=self.options.test_services if call.is_test else self.options.services,
            settings=self.options.settings,
            resume=resume,
        )
        logger.info("call session started", extra={"id": call_id})
        await session.run()
        with contextlib.suppress(Exception):
            await connection.close()

    async def _await_start(self, connection: Any) -> protocol.Start:
        while True:
            message = protocol.parse(await connection.recv())
            if isinstance(message, protocol.Start):
                return message
            if isinstance(message, protocol.Stop):
                raise ConnectionError("stopped before starting")

    async def _refuse(self, context: CallContext, start: protocol.Start, why: str) -> None:
        from talkturo.domain.calls import CallEvent
        from talkturo.domain.common import utcnow

        end = CallEvent(
            at=utcnow(),
            status="ended",
            outcome="failed",
            ended_reason="error",
            duration_seconds=0,
            error_message=why,
        )
        with contextlib.suppress(Exception):
            await self.options.services.close(
                context,
                stream_sid=start.stream_sid,
                charge=Decimal(0),
                billed_seconds=0,
                recorded=False,
                bookings=[],
                end=end,
            )
        if context.call.carrier_sid:
            with contextlib.suppress(Exception):
                await self.options.services.hang_up(context.call.carrier_sid)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str, port: int, sock: Any = None) -> int:
        from websockets.asyncio.server import serve

        kwargs: dict[str, Any] = {
            "process_request": self._process_request,
            "max_size": 2**20,
            "compression": None,
            "ping_interval": 20,
            "ping_timeout": 20,
        }
        if sock is not None:
            self._server = await serve(self._handle, sock=sock, **kwargs)
        else:
            self._server = await serve(self._handle, host, port, **kwargs)
        sockets = list(self._server.sockets)
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def drain(self, seconds: float) -> None:
        """Take no new calls; let live ones finish (at most `seconds`), then stop."""
        self.draining = True
        logger.info("draining", extra={"live_calls": len(self.sessions)})
        if self.sessions:
            await asyncio.wait(set(self.sessions), timeout=seconds)
        await self.stop()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self.stopped.set()


# --------------------------------------------------------------------------- the process


def default_options() -> ServiceOptions:
    from talkturo.carrier.base import CarrierNotConfigured
    from talkturo.carrier.factory import webhook_auth_token
    from talkturo.webhooks.carrier import voice_token_secret

    def auth_token() -> str | None:
        try:
            return webhook_auth_token()
        except CarrierNotConfigured:
            return None

    settings = get_settings()
    public = settings.voice_stream_url.removesuffix(MEDIA_PATH)
    from talkturo.provider_keys import provider_env

    env = provider_env()
    return ServiceOptions(
        auth_token=auth_token,
        token_secret=voice_token_secret,
        public_url=public,
        provider_env=lambda: env,
    )


def _warmed_up(task: asyncio.Task[None]) -> None:
    error = None if task.cancelled() else task.exception()
    if error is not None:  # calls still work: each loads the models itself, or fails clearly
        logger.warning("the offline speech models did not load", extra={"error": str(error)})


async def serve_forever(host: str = "0.0.0.0", port: int | None = None) -> None:  # noqa: S104
    """Run until SIGTERM/SIGINT, then drain."""
    port = port if port is not None else int(os.environ.get("VOICE_PORT", LOCAL_VOICE_PORT))
    drain_seconds = float(os.environ.get("VOICE_DRAIN_SECONDS", DEFAULT_DRAIN_SECONDS))
    service = VoiceService(default_options())
    bound = await service.start(host, port)
    logger.info("voice service listening", extra={"port": bound})
    warming = None
    if Providers().offline_allowed:  # the local platform: its stand-ins will serve calls
        warming = asyncio.create_task(asyncio.to_thread(warm_up_offline_speech))
        warming.add_done_callback(_warmed_up)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.drain(drain_seconds)
