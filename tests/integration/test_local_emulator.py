"""The AWS emulator serialises requests, except SQS long polls, which wait without blocking."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest

from talkturo.local.emulator import Emulator

pytestmark = pytest.mark.integration


def test_a_long_poll_neither_blocks_other_calls_nor_misses_a_new_message(
    emulator: Emulator,
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="emulator-long-poll")["QueueUrl"]
    received: list[Any] = []
    polling = threading.Thread(
        target=lambda: received.append(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=20))
    )

    polling.start()
    # While the poll waits, other calls go through (they would wait the full 20 s otherwise)...
    dynamodb.list_tables()
    assert polling.is_alive()
    # ...and a message sent meanwhile ends the poll.
    sqs.send_message(QueueUrl=queue, MessageBody="hello")
    polling.join(timeout=10)

    assert not polling.is_alive()
    assert [m["Body"] for m in received[0]["Messages"]] == ["hello"]


def test_a_long_poll_on_an_empty_queue_answers_empty(emulator: Emulator) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="emulator-long-poll-empty")["QueueUrl"]

    answer = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)

    assert answer.get("Messages", []) == []
