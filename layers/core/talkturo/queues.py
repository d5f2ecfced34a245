"""Sending work to the platform's SQS queues (JSON messages)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from talkturo.config import get_settings


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3

    return boto3.client("sqs", region_name=get_settings().aws_region)


def send(queue_url: str, message: dict[str, Any]) -> None:
    if not queue_url:
        raise RuntimeError("the queue is not configured (its *_QUEUE_URL variable is empty)")
    _client().send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
