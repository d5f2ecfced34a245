"""Sending work to the platform's SQS queues (JSON messages)."""

from __future__ import annotations

import json
from typing import Any

from talkturo import aws


def send(queue_url: str, message: dict[str, Any], *, delay_seconds: int = 0) -> None:
    if not queue_url:
        raise RuntimeError("the queue is not configured (its *_QUEUE_URL variable is empty)")
    options: dict[str, Any] = {"DelaySeconds": delay_seconds} if delay_seconds else {}
    aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(message), **options)
