"""Drive the dialer worker as Lambda would: SQS messages in, the handler (loaded from its file,
functions/dialer/app.py), deletes out for what succeeded."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from typing import Any

import boto3

from talkturo.local.template import PROJECT_ROOT, Stack
from tests.integration.number_queue import LambdaContext

HANDLER_PATH = PROJECT_ROOT / "functions" / "dialer" / "app.py"
QUEUE = "DialQueue"


@lru_cache(maxsize=1)
def handler() -> Any:
    spec = importlib.util.spec_from_file_location("dialer_app", HANDLER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def invoke(stack: Stack, body: str) -> dict[str, Any]:
    record = {
        "messageId": "msg-0",
        "receiptHandle": "handle-0",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": stack.arns[QUEUE],
        "awsRegion": "us-east-1",
    }
    answer: dict[str, Any] = handler()({"Records": [record]}, LambdaContext())
    return answer


def receive(stack: Stack) -> list[tuple[str, str]]:
    answer = boto3.client("sqs", region_name="us-east-1").receive_message(
        QueueUrl=stack.physical[QUEUE], MaxNumberOfMessages=10, WaitTimeSeconds=0
    )
    return [(m["Body"], m["ReceiptHandle"]) for m in answer.get("Messages", [])]


def drain(stack: Stack) -> list[str]:
    """Deliver every waiting dial job once; the bodies handled (failed ones stay queued)."""
    handled = []
    for body, receipt_handle in receive(stack):
        if invoke(stack, body) == {"batchItemFailures": []}:
            boto3.client("sqs", region_name="us-east-1").delete_message(
                QueueUrl=stack.physical[QUEUE], ReceiptHandle=receipt_handle
            )
        handled.append(body)
    return handled
