"""The simulator's webhooks: every event to every endpoint, signed exactly as Stripe signs.

`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "{t}.{raw body}" keyed with the
endpoint's secret>`; with `extra_secret` set a second `v1=` is added for that secret (as Stripe
does while an endpoint's secret is rolled). A delivery that is not answered 2xx is tried again
after `retry_seconds` (doubling), up to `max_attempts`.

Switches, to show that the platform copes with what Stripe may do: `copies` sends every event
that many times; `reorder` sends the events of one change in reverse order; `delay_seconds`
holds each delivery back; `stale_attempts` signs the first attempts of each delivery with a
timestamp ten minutes old (the platform refuses those, the retry passes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

import httpx

logger = logging.getLogger("local.stripe_sim")

STALE_SECONDS = 600


@dataclass
class Switches:
    copies: int = 1
    reorder: bool = False
    delay_seconds: float = 0.0
    stale_attempts: int = 0
    extra_secret: str | None = None
    retry_seconds: float = 1.0
    max_attempts: int = 6

    def update(self, **changes: Any) -> None:
        names = {f.name: f.type for f in fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise ValueError(f"no such switch: {name}")
            current = getattr(self, name)
            if isinstance(current, bool):
                value = (
                    str(value).lower() in ("1", "true", "yes", "on")
                    if not isinstance(value, bool)
                    else value
                )
            elif isinstance(current, int):
                value = int(value)
            elif isinstance(current, float):
                value = float(value)
            elif value in ("", None):
                value = None
            setattr(self, name, value)


def sign(body: str, secrets: list[str], timestamp: int) -> str:
    parts = [f"t={timestamp}"]
    for secret in secrets:
        digest = hmac.new(
            secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256
        ).hexdigest()
        parts.append(f"v1={digest}")
    return ",".join(parts)


@dataclass
class Delivery:
    event_id: str
    event_type: str
    url: str
    endpoint_id: str = ""
    attempts: list[int] = field(default_factory=list)  # the status of each (0: no answer)
    done: bool = False

    @property
    def delivered(self) -> bool:
        return bool(self.attempts) and 200 <= self.attempts[-1] < 300


class WebhookSender:
    def __init__(self, switches: Switches) -> None:
        self.switches = switches
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[tuple[float, Delivery, str, dict[str, Any]] | None] = queue.Queue()
        self._due: list[tuple[float, Delivery, str, dict[str, Any]]] = []
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(timeout=10.0)
        self._busy = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stripe-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.close()

    def send(self, events: list[dict[str, Any]]) -> None:
        """Queue `events` (those of one change) for every enabled endpoint."""
        switches = self.switches
        ordered = list(reversed(events)) if switches.reorder else list(events)
        start = time.monotonic() + switches.delay_seconds
        with self._lock:
            for endpoint in self.endpoints.values():
                wanted = endpoint.get("enabled_events") or ["*"]
                for copy_number in range(max(1, switches.copies)):
                    for index, event in enumerate(ordered):
                        if "*" not in wanted and event["type"] not in wanted:
                            continue
                        delivery = Delivery(
                            event["id"], event["type"], endpoint["url"], endpoint["id"]
                        )
                        self.deliveries.append(delivery)
                        # Copies go out after every event of the change went once.
                        due = start + 0.001 * (copy_number * len(ordered) + index)
                        self._queue.put((due, delivery, endpoint["id"], event))
            self._lock.notify_all()

    def outstanding(self) -> list[dict[str, str]]:
        """The deliveries not over yet (not answered 2xx, attempts left): what a restarted
        simulator sends again."""
        with self._lock:
            return [
                {"event": d.event_id, "endpoint": d.endpoint_id}
                for d in self.deliveries
                if not d.done
            ]

    def resume(self, outstanding: list[dict[str, str]], events: dict[str, dict[str, Any]]) -> int:
        """Send again, at once and with their attempts afresh, the deliveries `outstanding()`
        answered before a restart; how many. Those of a gone event or endpoint are dropped."""
        resumed = 0
        now = time.monotonic()
        with self._lock:
            for saved in outstanding:
                event = events.get(saved["event"])
                endpoint = self.endpoints.get(saved["endpoint"])
                if event is None or endpoint is None:
                    continue
                delivery = Delivery(event["id"], event["type"], endpoint["url"], endpoint["id"])
                self.deliveries.append(delivery)
                self._queue.put((now + 0.001 * resumed, delivery, endpoint["id"], event))
                resumed += 1
            self._lock.notify_all()
        return resumed

    def idle(self) -> bool:
        """Every delivery queued so far is over (answered 2xx, or out of attempts)."""
        with self._lock:
            return all(d.done for d in self.deliveries)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.02)
        return self.idle()

    def _run(self) -> None:
        while True:
            wait = 0.5
            if self._due:
                wait = max(0.0, min(self._due)[0] - time.monotonic()) if self._due else 0.5
            try:
                item = self._queue.get(timeout=min(wait, 0.5))
                if item is None:
                    return
                with self._lock:
                    self._due.append(item)
            except queue.Empty:
                pass
            now = time.monotonic()
            with self._lock:
                ready = sorted((d for d in self._due if d[0] <= now), key=lambda d: d[0])
                self._due = [d for d in self._due if d[0] > now]
                self._busy += len(ready)
            for due, delivery, endpoint_id, event in ready:
                try:
                    self._attempt(due, delivery, endpoint_id, event)
                finally:
                    with self._lock:
                        self._busy -= 1

    def _attempt(
        self, due: float, delivery: Delivery, endpoint_id: str, event: dict[str, Any]
    ) -> None:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            delivery.done = True
            return
        switches = self.switches
        body = json.dumps(event, indent=2)
        now = int(time.time())
        stale = len(delivery.attempts) < switches.stale_attempts
        secrets = [endpoint["secret"]] + ([switches.extra_secret] if switches.extra_secret else [])
        header = sign(body, secrets, now - STALE_SECONDS if stale else now)
        status = 0
        try:
            answer = self._client.post(
                endpoint["url"],
                content=body.encode(),
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": header,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                },
            )
            status = answer.status_code
        except httpx.HTTPError as error:
            logger.info("webhook %s to %s: %s", event["type"], endpoint["url"], error)
        delivery.attempts.append(status)
        if 200 <= status < 300 or len(delivery.attempts) >= switches.max_attempts:
            delivery.done = True
            return
        retry = switches.retry_seconds * (2 ** (len(delivery.attempts) - 1))
        with self._lock:
            self._due.append((time.monotonic() + retry, delivery, endpoint_id, event))
