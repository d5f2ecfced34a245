"""The contact-import worker's queue, driven as Lambda would (see lambda_worker)."""

from __future__ import annotations

import json
from typing import Any

from talkturo.local.template import Stack
from tests.integration.lambda_worker import LambdaContext, SqsWorker

__all__ = ["LambdaContext", "drain", "handler", "invoke", "receive", "sqs_event", "step"]

_worker = SqsWorker("contact_import", "ContactImportQueue")


def handler() -> Any:
    return _worker.handler


def sqs_event(stack: Stack, bodies: list[str]) -> dict[str, Any]:
    return _worker.sqs_event(stack, bodies)


def invoke(stack: Stack, bodies: list[str]) -> dict[str, Any]:
    """Run the handler on these bodies; fail the test if it reports any record as failed."""
    answer = _worker.invoke(stack, bodies)
    assert answer == {"batchItemFailures": []}, answer
    return answer


def receive(stack: Stack) -> list[tuple[str, str]]:
    return _worker.receive(stack)


def step(stack: Stack) -> list[dict[str, Any]]:
    """Deliver what waits on the queue once; the messages handled."""
    return [json.loads(body) for body in _worker.deliver_waiting(stack, strict=True)]


def drain(stack: Stack, *, max_rounds: int = 50) -> list[dict[str, Any]]:
    """Deliver messages until the queue is empty (bounded); every message handled."""
    handled: list[dict[str, Any]] = []
    for _ in range(max_rounds):
        batch = step(stack)
        if not batch:
            return handled
        handled.extend(batch)
    raise AssertionError(f"the import queue was still not empty after {max_rounds} rounds")
