"""The billing worker's queue, driven as Lambda would (see lambda_worker)."""

from __future__ import annotations

from typing import Any

from talkturo.local.template import Stack
from tests.integration.lambda_worker import SqsWorker

_worker = SqsWorker("billing_events", "BillingEventQueue")


def invoke(stack: Stack, bodies: list[str]) -> dict[str, Any]:
    return _worker.invoke(stack, bodies)


def receive(stack: Stack) -> list[tuple[str, str]]:
    return _worker.receive(stack)


def drain(stack: Stack) -> list[str]:
    """Apply every waiting Stripe event (strictly: a failure fails the test); the bodies."""
    handled: list[str] = []
    while True:
        batch = _worker.deliver_waiting(stack, strict=True)
        if not batch:
            return handled
        handled += batch
