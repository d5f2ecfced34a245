"""The carrier simulator as a running server: uvicorn on a loopback port, in a thread.

    with CarrierSimulator(time_scale=0.01) as sim:
        carrier = TwilioCarrier(sim.account_sid, sim.auth_token, api_base_url=sim.url)
        sim.set_callee("+14155550123", behaviour="busy")
        ...
        sim.wait_for_call(call_sid, timeout=5)   # ended, every callback delivered

        # A simulated caller dials a number bought here (its VoiceUrl answers with TwiML):
        sid = sim.dial("+14155550123", script=read_script("caller.yaml"))
        final = sim.wait_for_call(sid)
        final["party"]["heard"], final["heard_audio"]   # what the caller heard

Credentials are generated per simulator unless given; `numbers` are IncomingPhoneNumbers bought
before (what `saved_state()` answered, for a simulator that outlives a restart). `time_scale`
multiplies every simulated duration (ring, talk, answering-machine detection, ring-out
timeout, and the pace of media streams: 20 ms frames every 20 ms times time_scale): 1.0 is real
time. `tts` chooses how callers' lines become audio: "auto" (the Piper voice when the `speech`
extra is installed, else espeak-ng when installed, else a synthetic voice), "piper",
"espeak-ng" or "synthetic" (deterministic and instant, what most tests use).
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import socket
import threading
from concurrent.futures import Future
from typing import Any

from talkturo.local.carrier_sim.app import CarrierApp
from talkturo.local.carrier_sim.network import Callee, Network, parse_behaviour
from talkturo.local.serving import http_url, listening_socket, wait_until_started
from talkturo.simcaller.audio import Engine
from talkturo.simcaller.scripts import Script

STARTS_WITHIN_SECONDS = 15.0


class SimulatorError(Exception):
    pass


def generate_credentials() -> tuple[str, str]:
    """An account SID (AC + 32 hex, Twilio's shape) and an auth token (32 hex)."""
    return "AC" + secrets.token_hex(16), secrets.token_hex(16)


class CarrierSimulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account_sid: str | None = None,
        auth_token: str | None = None,
        time_scale: float = 1.0,
        seed: int = 2010,
        tts: Engine = "auto",
        numbers: list[dict[str, Any]] | None = None,
    ) -> None:
        generated_sid, generated_token = generate_credentials()
        self.account_sid = account_sid or generated_sid
        self.auth_token = auth_token or generated_token
        self.host = host
        self.port = port
        self.time_scale = time_scale
        self._seed = seed
        self.tts: Engine = tts
        self._held = list(numbers or [])
        self._app: CarrierApp | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.network: Network | None = None

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> CarrierSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        import uvicorn

        try:
            sock = listening_socket(self.host, self.port)
        except OSError as exc:
            raise SimulatorError(
                f"the carrier simulator cannot listen on {self.host}:{self.port} ({exc.strerror})"
            ) from None
        self.port = sock.getsockname()[1]
        self.network = Network(
            self.account_sid,
            self.auth_token,
            time_scale=self.time_scale,
            seed=self._seed,
            tts=self.tts,
        )
        self.network.hold_numbers(self._held)
        self._app = CarrierApp(self.network, self.auth_token)
        app = self._app.app
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            # The process's own logging setup (the console's format), not uvicorn's.
            log_config=None,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name="carrier-simulator", daemon=True
        )
        self._thread.start()
        if not wait_until_started(self._server, self._thread, STARTS_WITHIN_SECONDS):
            raise SimulatorError("the carrier simulator did not start")

    def _run(self, sock: socket.socket) -> None:
        async def serve() -> None:
            assert self.network is not None
            self.network.loop = asyncio.get_running_loop()
            try:
                await self._server.serve(sockets=[sock])
            finally:
                if self.network is not None:
                    await self.network.close()

        asyncio.run(serve())

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    # ------------------------------------------------------------------------------ control
    def _on_loop(self, coroutine: Any, timeout: float) -> Any:
        loop = self._loop()
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, loop)
        return future.result(timeout=timeout)

    def _loop(self) -> asyncio.AbstractEventLoop:
        network = self.network
        if network is None or network.loop is None:
            raise SimulatorError("the carrier simulator is not running")
        return network.loop

    def saved_state(self) -> dict[str, Any]:
        """The credentials and the numbers bought: what a restarted simulator needs."""

        async def read() -> list[dict[str, Any]]:
            assert self.network is not None
            return copy.deepcopy(list(self.network.numbers.values()))

        if self.running:
            numbers = self._on_loop(read(), timeout=5)
        else:  # stopped: nothing changes the numbers any more
            numbers = copy.deepcopy(list(self.network.numbers.values())) if self.network else []
        return {"account_sid": self.account_sid, "auth_token": self.auth_token, "numbers": numbers}

    def rebase_urls(self, old: str, new: str) -> None:
        """The numbers' webhooks on base URL `old` go to `new` (the platform moved)."""

        async def rebase() -> None:
            assert self.network is not None
            self.network.rebase_urls(old, new)

        self._on_loop(rebase(), timeout=5)

    def set_callee(
        self,
        number: str,
        behaviour: str = "human",
        *,
        ring_seconds: float = 2.0,
        talk_seconds: float | None = None,
        amd_seconds: float = 1.5,
        script: Script | None = None,
    ) -> None:
        callee = Callee(parse_behaviour(behaviour), ring_seconds, talk_seconds, amd_seconds, script)

        async def put() -> None:
            assert self.network is not None
            self.network.callees[number] = callee

        self._on_loop(put(), timeout=5)

    def dial(self, to: str, *, from_: str | None = None, script: Script | None = None) -> str:
        """A simulated caller dials `to` (a number bought here); the call's SID at once."""

        async def start() -> str:
            assert self.network is not None
            return self.network.start_inbound(from_ or "+14155552671", to, script).sid

        sid: str = self._on_loop(start(), timeout=5)
        return sid

    def wait_for_call(self, sid: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the call has ended and its callbacks were delivered; its final state."""

        async def wait() -> dict[str, Any]:
            assert self.network is not None
            call = self.network.calls[sid]
            await asyncio.wait_for(call.done.wait(), timeout)
            return {
                "sid": call.sid,
                "direction": call.direction,
                "status": call.status,
                "duration": call.duration,
                "answered_by": call.answered_by,
                "error_code": call.error_code,
                "events": list(call.events),
                "documents": list(call.documents),
                "dials": [dict(d) for d in call.dials],
                "parent_call_sid": call.parent_call_sid,
                "party": call.record.as_dict(),
                "heard_audio": bytes(call.record.heard_audio),
            }

        result: dict[str, Any] = self._on_loop(wait(), timeout=timeout + 1)
        return result
