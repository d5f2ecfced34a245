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


class NotQueued(RuntimeError):
    """SQS took a batch but refused some of its messages."""


def send_all(queue_url: str, messages: list[dict[str, Any]]) -> None:
    """Send every message, ten to a request (SQS's most); raises when any was not taken."""
    if not queue_url:
        raise RuntimeError("the queue is not configured (its *_QUEUE_URL variable is empty)")
    sqs = aws.client("sqs")
    for first in range(0, len(messages), 10):
        entries = [
            {"Id": str(n), "MessageBody": json.dumps(message)}
            for n, message in enumerate(messages[first : first + 10])
        ]
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if answer.get("Failed"):
            failed = answer["Failed"][0]
            raise RuntimeError(
                f"SQS refused a message: {failed.get('Code')}: {failed.get('Message')}"
            )
