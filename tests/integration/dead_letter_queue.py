"""Drive jobs into their dead-letter queues for real, and the dead-letter worker after them.

The local platform's SQS runner feeds each queue of the template to its function, exactly as it
does under `talkturo dev`. A queue's visibility timeout is set to 0 so a failed message is
visible again at once; SQS's own redrive then moves it to the dead-letter queue on the receive
after `maxReceiveCount` (5) failed ones. Nothing waits on the clock.
"""

from __future__ import annotations

from typing import Any

import boto3

from talkturo.local.runner import SqsRunner, Subscription
from talkturo.local.template import Stack

MAX_RECEIVES = 5
DEAD_LETTER_QUEUES = {
    "ContactImportQueue": "ContactImportDeadLetterQueue",
    "ProvisioningQueue": "ProvisioningDeadLetterQueue",
    "DialQueue": "DialDeadLetterQueue",
    "PostCallQueue": "PostCallDeadLetterQueue",
    "CampaignQueue": "CampaignDeadLetterQueue",
    "TestRunQueue": "TestRunDeadLetterQueue",
}


def _sqs() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


class Redrive:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.runner = SqsRunner(stack)
        self.by_queue = {s.source.queue: s for s in self.runner.subscriptions}

    def subscription(self, queue: str) -> Subscription:
        return self.by_queue[queue]

    def exhaust(self, queue: str) -> int:
        """Deliver the queue's messages to its worker until none is left (each one succeeded or
        is a dead letter now); how many deliveries that took."""
        url = self.stack.physical[queue]
        _sqs().set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
        deliveries = 0
        for _ in range(10 * MAX_RECEIVES):
            if queue in self.by_queue:
                handed = self.runner.deliver(self.by_queue[queue], 0)
            else:  # no worker for this queue (yet): every receive is a failed delivery
                handed = len(
                    _sqs()
                    .receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
                    .get("Messages", [])
                )
            if not handed:
                return deliveries
            deliveries += handed
        raise AssertionError(f"{queue} still had messages after {deliveries} deliveries")

    def handle_dead_letters(self, source_queue: str) -> int:
        """Let the dead-letter worker take what waits on the queue's DLQ; how many it took."""
        return self.runner.deliver(self.by_queue[DEAD_LETTER_QUEUES[source_queue]], 0)

    def deliver_twice(self, source_queue: str) -> None:
        """Hand the one waiting dead letter to the worker twice (a duplicate delivery), then
        delete it; the worker must report it done both times."""
        subscription = self.by_queue[DEAD_LETTER_QUEUES[source_queue]]
        (message,) = _sqs().receive_message(
            QueueUrl=subscription.queue_url,
            MessageSystemAttributeNames=["All"],
            VisibilityTimeout=0,
        )["Messages"]
        for _ in range(2):
            # The runner's own invocation: the Lambda-shaped event of this very message.
            assert self.runner._invoke(subscription, [message]) == set()
        _sqs().delete_message(
            QueueUrl=subscription.queue_url, ReceiptHandle=message["ReceiptHandle"]
        )

    def waiting(self, queue: str) -> int:
        attributes = _sqs().get_queue_attributes(
            QueueUrl=self.stack.physical[queue],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())
