"""Drive an SQS worker as Lambda would: messages in, the handler (loaded from the very file that
is deployed), deletes out for what succeeded. One class for every worker's test helpers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3

from talkturo.local.template import PROJECT_ROOT, Stack

SAMPLE_EVENT = PROJECT_ROOT / "events" / "sqs_batch.json"


@dataclass
class LambdaContext:
    function_name: str = "TestFunction"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:TestFunction"
    aws_request_id: str = "test-request"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _sqs() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


class SqsWorker:
    def __init__(self, function_dir: str, queue: str) -> None:
        self.path = PROJECT_ROOT / "functions" / function_dir / "app.py"
        self.queue = queue

    @cached_property
    def handler(self) -> Any:
        spec = importlib.util.spec_from_file_location(f"{self.path.parent.name}_app", self.path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.handler

    def sqs_event(self, stack: Stack, bodies: list[str]) -> dict[str, Any]:
        """A Lambda SQS event carrying these bodies (shaped like events/sqs_batch.json)."""
        sample = json.loads(SAMPLE_EVENT.read_text())["Records"][0]
        records = [
            {
                **sample,
                "messageId": f"msg-{index}",
                "receiptHandle": f"handle-{index}",
                "body": body,
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSourceARN": stack.arns[self.queue],
            }
            for index, body in enumerate(bodies)
        ]
        return {"Records": records}

    def invoke(self, stack: Stack, bodies: list[str]) -> dict[str, Any]:
        """Run the handler on these bodies; its partial batch response."""
        answer: dict[str, Any] = self.handler(self.sqs_event(stack, bodies), LambdaContext())
        return answer

    def receive(self, stack: Stack) -> list[tuple[str, str]]:
        """The messages waiting now: (body, receipt handle) each."""
        answer = _sqs().receive_message(
            QueueUrl=stack.physical[self.queue], MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        return [(m["Body"], m["ReceiptHandle"]) for m in answer.get("Messages", [])]

    def deliver_waiting(self, stack: Stack, *, strict: bool = False) -> list[str]:
        """Deliver each waiting message once (batch size 1, as deployed); the bodies handled.

        A message the handler reports as failed stays on the queue (or fails the test, strict).
        """
        handled = []
        for body, receipt_handle in self.receive(stack):
            answer = self.invoke(stack, [body])
            if strict:
                assert answer == {"batchItemFailures": []}, answer
            if answer == {"batchItemFailures": []}:
                _sqs().delete_message(
                    QueueUrl=stack.physical[self.queue], ReceiptHandle=receipt_handle
                )
            handled.append(body)
        return handled
