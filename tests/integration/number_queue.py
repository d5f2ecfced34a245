"""Drive the number-provisioning worker as Lambda would: SQS messages in, the handler, deletes out.

The handler is loaded from its file (functions/number_provisioning/app.py), the very file deployed.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3

from talkturo.local.template import PROJECT_ROOT, Stack

HANDLER_PATH = PROJECT_ROOT / "functions" / "number_provisioning" / "app.py"
QUEUE = "ProvisioningQueue"


@dataclass
class LambdaContext:
    function_name: str = "NumberProvisioningFunction"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:000000000000:function:NumberProvisioningFunction"
    )
    aws_request_id: str = "test-request"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@lru_cache(maxsize=1)
def handler() -> Any:
    spec = importlib.util.spec_from_file_location("number_provisioning_app", HANDLER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def _sqs() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


def invoke(stack: Stack, bodies: list[str]) -> dict[str, Any]:
    """Run the handler on these bodies; answers its partial batch response."""
    records = [
        {
            "messageId": f"msg-{index}",
            "receiptHandle": f"handle-{index}",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": stack.arns[QUEUE],
            "awsRegion": "us-east-1",
        }
        for index, body in enumerate(bodies)
    ]
    answer: dict[str, Any] = handler()({"Records": records}, LambdaContext())
    return answer


def receive(stack: Stack) -> list[tuple[str, str]]:
    answer = _sqs().receive_message(
        QueueUrl=stack.physical[QUEUE], MaxNumberOfMessages=10, WaitTimeSeconds=0
    )
    return [(m["Body"], m["ReceiptHandle"]) for m in answer.get("Messages", [])]


def drain(stack: Stack) -> list[dict[str, Any]]:
    """Deliver every waiting message once (batch size 1, as deployed); the bodies handled.
    A message the handler reports as failed is left on the queue."""
    handled = []
    for body, receipt_handle in receive(stack):
        answer = invoke(stack, [body])
        if answer == {"batchItemFailures": []}:
            _sqs().delete_message(QueueUrl=stack.physical[QUEUE], ReceiptHandle=receipt_handle)
        handled.append(json.loads(body))
    return handled
