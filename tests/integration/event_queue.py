"""The event delivery worker's queue, driven as Lambda would (see lambda_worker)."""

from __future__ import annotations

from typing import Any

from talkturo.local.template import Stack
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
