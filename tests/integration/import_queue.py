"""Drive the contact-import worker as Lambda would: SQS messages in, the handler, deletes out.

The handler is loaded from its file (functions/contact_import/app.py), the very file deployed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3

from talkturo.local.template import PROJECT_ROOT, Stack

HANDLER_PATH = PROJECT_ROOT / "functions" / "contact_import" / "app.py"
SAMPLE_EVENT = PROJECT_ROOT / "events" / "sqs_batch.json"
QUEUE = "ContactImportQueue"


@dataclass
class LambdaContext:
    function_name: str = "ContactImportFunction"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:000000000000:function:ContactImportFunction"
    )
    aws_request_id: str = "test-request"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@lru_cache(maxsize=1)
def handler() -> Any:
    spec = importlib.util.spec_from_file_location("contact_import_app", HANDLER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def _sqs() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


def sqs_event(stack: Stack, bodies: list[str]) -> dict[str, Any]:
    """A Lambda SQS event carrying these message bodies (shaped like events/sqs_batch.json)."""
    template = json.loads(SAMPLE_EVENT.read_text())["Records"][0]
    records = [
        {
            **template,
            "messageId": f"msg-{index}",
            "receiptHandle": f"handle-{index}",
            "body": body,
            "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
            "eventSourceARN": stack.arns[QUEUE],
        }
        for index, body in enumerate(bodies)
    ]
    return {"Records": records}


def invoke(stack: Stack, bodies: list[str]) -> dict[str, Any]:
    """Run the handler on these bodies; fail the test if it reports any record as failed."""
    answer: dict[str, Any] = handler()(sqs_event(stack, bodies), LambdaContext())
    assert answer == {"batchItemFailures": []}, answer
    return answer


def receive(stack: Stack) -> list[tuple[str, str]]:
    """Take the messages now waiting on the import queue: (body, receipt handle) each."""
    answer = _sqs().receive_message(
        QueueUrl=stack.physical[QUEUE], MaxNumberOfMessages=10, WaitTimeSeconds=0
    )
    return [(m["Body"], m["ReceiptHandle"]) for m in answer.get("Messages", [])]


def step(stack: Stack) -> list[dict[str, Any]]:
    """Deliver what waits on the queue to the handler once (batch size 1, as deployed);
    answer the messages handled."""
    handled = []
    for body, receipt_handle in receive(stack):
        invoke(stack, [body])
        _sqs().delete_message(QueueUrl=stack.physical[QUEUE], ReceiptHandle=receipt_handle)
        handled.append(json.loads(body))
    return handled


def drain(stack: Stack, *, max_rounds: int = 50) -> list[dict[str, Any]]:
    """Deliver messages until the queue is empty (bounded); answer every message handled."""
    handled: list[dict[str, Any]] = []
    for _ in range(max_rounds):
        batch = step(stack)
        if not batch:
            return handled
        handled.extend(batch)
    raise AssertionError(f"the import queue was still not empty after {max_rounds} rounds")
