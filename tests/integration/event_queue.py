"""The event delivery worker's queue, driven as Lambda would (see lambda_worker)."""

from __future__ import annotations

import json
from typing import Any

from talkturo.local.template import Stack
from talkturo.store import events as event_store
from tests.integration.lambda_worker import LambdaContext, SqsWorker

_worker = SqsWorker("event_delivery", "EventQueue")


def invoke(stack: Stack, bodies: list[str]) -> dict[str, Any]:
    return _worker.invoke(stack, bodies)


def receive(stack: Stack) -> list[tuple[str, str]]:
    return _worker.receive(stack)


def drain(stack: Stack) -> list[str]:
    """Deliver every waiting delivery job once; the bodies handled."""
    return _worker.deliver_waiting(stack)


def tick() -> Any:
    """The minute schedule (the sweeper)."""
    return _worker.handler({"version": "0", "detail-type": "Scheduled Event"}, LambdaContext())


def emitted(account_id: str, endpoint_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The events queued for an endpoint (of one type, given `kind`), oldest first."""
    found, _ = event_store.list_deliveries(
        account_id, endpoint_id, status=None, limit=100, starting_after=None
    )
    bodies = event_store.event_bodies(account_id, {d.event_id for d in found})
    sent = [json.loads(bodies[d.event_id]) for d in reversed(found)]
    return [e for e in sent if kind is None or e["type"] == kind]
