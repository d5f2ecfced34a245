"""The number-provisioning worker's queue, driven as Lambda would (see lambda_worker)."""

from __future__ import annotations

import json
from typing import Any

from talkturo.local.template import Stack
from tests.integration.lambda_worker import LambdaContext, SqsWorker

__all__ = ["LambdaContext", "drain", "invoke", "receive"]

_worker = SqsWorker("number_provisioning", "ProvisioningQueue")


def invoke(stack: Stack, bodies: list[str]) -> dict[str, Any]:
    return _worker.invoke(stack, bodies)


def receive(stack: Stack) -> list[tuple[str, str]]:
    return _worker.receive(stack)


def drain(stack: Stack) -> list[dict[str, Any]]:
    """Deliver every waiting message once; the bodies handled (failed ones stay queued)."""
    return [json.loads(body) for body in _worker.deliver_waiting(stack)]
