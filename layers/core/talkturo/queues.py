"""Sending work to the platform's SQS queues (JSON messages)."""

from __future__ import annotations

import json
from typing import Any

from talkturo import aws


def send(queue_url: str, message: dict[str, Any]) -> None:
    if not queue_url:
        raise RuntimeError("the queue is not configured (its *_QUEUE_URL variable is empty)")
    aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
