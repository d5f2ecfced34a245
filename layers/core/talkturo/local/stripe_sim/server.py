"""The Stripe simulator as a running server: uvicorn on a loopback port, in a thread.

    with StripeSimulator() as sim:
        gateway = StripeGateway(sim.secret_key, api_base_url=sim.url)
        sim.add_endpoint("http://127.0.0.1:8000/billing/stripe")   # its secret: sim.webhook_secret
        sim.switches.update(copies=3, reorder=True)
        ...                                   # a checkout: its url is sim.url + /pay/cs_test_…
        sim.pay(session_id, "4242424242424242")   # what the hosted page's form does
        sim.wait_for_webhooks()                    # every delivery answered (or given up)

`secret_key` and `webhook_secret` are generated unless given; `saved` is what `saved_state()`
answered before (the objects, idempotency keys, delayed payments and the webhooks not yet
delivered, kept across a restart of the local platform; `resume_deliveries()` sends those).
Delayed payments (the page's bank debit) succeed `settle_seconds` after they were made.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from typing import Any

from talkturo.local.serving import http_url, listening_socket, wait_until_started
from talkturo.local.stripe_sim.app import StripeApp
from talkturo.local.stripe_sim.state import StripeState, new_id
from talkturo.local.stripe_sim.webhooks import Switches, WebhookSender

STARTS_WITHIN_SECONDS = 15.0


class SimulatorError(Exception):
    pass


class StripeSimulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        secret_key: str | None = None,
        webhook_secret: str | None = None,
        saved: dict[str, Any] | None = None,
        settle_seconds: float = 2.0,
        switches: Switches | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.secret_key = secret_key or "sk_test_" + secrets.token_hex(24)
        self.webhook_secret = webhook_secret or "whsec_" + secrets.token_hex(24)
        self.settle_seconds = settle_seconds
        self.switches = switches or Switches()
        self.sender = WebhookSender(self.switches)
        self.state = StripeState(base_url="", emit=self.sender.send)
        if saved:
            self.state.load(saved)
        # Deliveries not over when the state was saved: sent again by resume_deliveries().
        self._outstanding: list[dict[str, str]] = list((saved or {}).get("deliveries") or [])
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._settler: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> StripeSimulator:
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
                f"the Stripe simulator cannot listen on {self.host}:{self.port} ({exc.strerror})"
            ) from None
        self.port = sock.getsockname()[1]
        self.state.base_url = self.url
        app = StripeApp(self.state, self.sender, self.secret_key).app
        config = uvicorn.Config(
            app, lifespan="off", log_level="warning", log_config=None, timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name="stripe-simulator", daemon=True
        )
        self.sender.start()
        self._thread.start()
        if not wait_until_started(self._server, self._thread, STARTS_WITHIN_SECONDS):
            raise SimulatorError("the Stripe simulator did not start")
        self._stopping.clear()
        self._settler = threading.Thread(target=self._settle, name="stripe-settle", daemon=True)
        self._settler.start()

    def _run(self, sock: socket.socket) -> None:
        self._server.run(sockets=[sock])

    def _settle(self) -> None:
        while not self._stopping.wait(0.2):
            self.state.settle_delayed(time.monotonic() - self.settle_seconds)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sender.stop()
        self._server = None
        self._thread = None

    # ------------------------------------------------------------------------------ control
    def add_endpoint(self, url: str, secret: str | None = None) -> dict[str, Any]:
        """Send every event to `url`, signed with `secret` (default: `webhook_secret`)."""
        endpoint: dict[str, Any] = {
            "id": new_id("we_"),
            "object": "webhook_endpoint",
            "url": url,
            "enabled_events": ["*"],
            "secret": secret or self.webhook_secret,
            "status": "enabled",
            "created": int(time.time()),
            "livemode": False,
        }
        with self.state.lock:
            self.state.put(endpoint)
            self.sender.endpoints[endpoint["id"]] = endpoint
        return endpoint

    def rebase_endpoints(self, url: str) -> None:
        """Every endpoint now points at `url` (the platform came back on another port)."""
        with self.state.lock:
            for endpoint in self.sender.endpoints.values():
                endpoint["url"] = url

    def restore_endpoints(self) -> None:
        with self.state.lock:
            for endpoint in self.state.objects["webhook_endpoint"].values():
                self.sender.endpoints[endpoint["id"]] = endpoint

    def resume_deliveries(self) -> int:
        """Send again the webhooks that were not delivered when the saved state was taken (the
        platform stopped before answering them); how many. Call it once the endpoints are
        restored and their receiver listens."""
        with self.state.lock:
            outstanding, self._outstanding = self._outstanding, []
            return self.sender.resume(outstanding, self.state.objects["event"])

    def pay(self, session_id: str, card: str = "4242424242424242") -> dict[str, Any]:
        """What the hosted page does when the buyer pays with `card` (a test card number)."""
        return self.state.pay_session(session_id, card)

    def authenticate(self, session_id: str, complete: bool = True) -> dict[str, Any]:
        return self.state.authenticate_session(session_id, complete)

    def dispute(self, payment_intent_id: str, amount: int | None = None) -> dict[str, Any]:
        with self.state.lock:
            intent = self.state.get("payment_intent", payment_intent_id)
        return self.state.create_dispute(intent["latest_charge"], amount, "fraudulent")

    def close_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        return self.state.close_dispute(dispute_id, outcome)

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """True once every delivery so far has been answered 2xx or run out of attempts."""
        return self.sender.wait_idle(timeout)

    def deliveries(self) -> list[dict[str, Any]]:
        return [
            {
                "event": d.event_id,
                "type": d.event_type,
                "url": d.url,
                "attempts": list(d.attempts),
                "delivered": d.delivered,
            }
            for d in list(self.sender.deliveries)
        ]

    def saved_state(self) -> dict[str, Any]:
        """The keys, the objects and the deliveries not over yet: what `saved=` takes back."""
        with self.state.lock:  # the events and their deliveries of one moment
            return {
                "secret_key": self.secret_key,
                "webhook_secret": self.webhook_secret,
                **self.state.dump(),
                "deliveries": self.sender.outstanding() + self._outstanding,
            }
