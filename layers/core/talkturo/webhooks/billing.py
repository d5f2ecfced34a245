"""Stripe's webhook: POST /billing/stripe, and the page Checkout returns the buyer to.

One function, `handle`, serves it whatever runs it (the billing-webhook Lambda behind API
Gateway, or the local platform's server): it takes the headers and the raw body, and answers
(status, content type, body).

The `Stripe-Signature` is verified on the raw body before anything is read from it
(talkturo.billing.gateway.verify_event: 300 s tolerance, any configured secret); a bad one is
400 and nothing is written. A verified event is stored once by its id and queued for the
billing worker, and the answer is 200 at once. Types the worker does not apply are stored as
applied and not queued. A repeat of an event is not queued again unless it has waited more
than REQUEUE_AFTER unapplied (its first message was lost: the worker applies an event any
number of times safely). Credits are never granted here, nor from the return page.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from talkturo import queues
from talkturo.billing.factory import webhook_secrets
from talkturo.billing.gateway import BadSignature, BillingNotConfigured
from talkturo.config import get_settings
from talkturo.logs import logger

WEBHOOK_PATH = "/billing/stripe"
RETURN_PATH = "/billing/return"
MAX_BODY_BYTES = 512 * 1024
REQUEUE_AFTER = timedelta(seconds=60)
JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: str


def _json(status: int, body: dict[str, object]) -> Answer:
    return Answer(status, JSON, json.dumps(body))


def _refused(status: int, code: str, message: str) -> Answer:
    return _json(
        status,
        {
            "error": {
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": None,
            }
        },
    )


def handle(headers: Mapping[str, str], body: bytes) -> Answer:
    """Stripe's webhook (headers' names in lower case)."""
    if len(body) > MAX_BODY_BYTES:
        return _refused(413, "payload_too_large", "the event is larger than this endpoint takes")
    try:
        secrets = webhook_secrets()
    except BillingNotConfigured:
        secrets = []
    if not secrets:
        logger.error("a stripe webhook arrived, but no webhook secret is configured")
        return _refused(503, "billing_not_configured", "webhooks are not configured")
    from talkturo.billing.gateway import verify_event

    try:
        event = verify_event(body, headers.get("stripe-signature"), secrets)
    except BadSignature as error:
        logger.warning("stripe webhook refused", extra={"reason": str(error)})
        return _refused(400, "invalid_signature", "the Stripe-Signature does not verify")
    from talkturo.domain.billing import HANDLED_EVENTS
    from talkturo.domain.common import utcnow
    from talkturo.store import billing as store

    event_id, event_type = str(event["id"]), str(event["type"])
    stored, applied, since = store.store_event(
        event_id, event_type, body.decode("utf-8"), ignored=event_type not in HANDLED_EVENTS
    )
    if not applied and (stored or utcnow() - since > REQUEUE_AFTER):
        queues.send(get_settings().billing_event_queue_url, {"event_id": event_id})
    logger.info(
        "stripe event received",
        extra={"event": event_id, "type": event_type, "repeat": not stored},
    )
    return _json(200, {"received": True})


def return_page(query: Mapping[str, str]) -> Answer:
    """Where Checkout sends the buyer back. It only says what happens next: the credits come
    from the signed webhook, never from this redirect."""
    if query.get("result") == "success":
        text = (
            "<h1>Thank you</h1><p>Your payment is being confirmed. The credits appear in your "
            "balance as soon as Stripe confirms it, usually within seconds.</p>"
        )
    else:
        text = "<h1>Checkout canceled</h1><p>Nothing was charged.</p>"
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Talkturo</title>'
        f"</head><body>{text}"
        f"<p><small>{html.escape(query.get('session_id', ''))}</small></p></body></html>"
    )
    return Answer(200, "text/html; charset=utf-8", page)
