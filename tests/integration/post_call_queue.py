"""The post-call worker's queue, driven as Lambda would (see lambda_worker)."""

from __future__ import annotations

from typing import Any

from talkturo.local.template import Stack
from tests.integration.lambda_worker import SqsWorker

_worker = SqsWorker("post_call", "PostCallQueue")


def invoke(stack: Stack, body: str) -> dict[str, Any]:
    return _worker.invoke(stack, [body])


def drain(stack: Stack) -> list[str]:
    """Deliver every waiting post-call job once; the bodies handled (failed ones stay queued)."""
    return _worker.deliver_waiting(stack)
