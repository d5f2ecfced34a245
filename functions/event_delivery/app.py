"""Lambda entry of customer event delivery: each SQS message is one attempt of one delivery;
the minute schedule runs the sweeper (deliveries whose retry wait is over, lost messages).

Thin by design: the attempt (claimed first, so a redelivered message never makes two), its
signature, the guarded request and what follows from the answer are in
talkturo.services.events. A receiver's failure is not the message's: it is logged on the
delivery and retried on the schedule; only an error of the platform itself (the table cannot
be reached) reports the record failed, so that SQS brings it back.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkturo.domain.events import DeliveryJob
from talkturo.logs import logger

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    from talkturo.services import events

    events.deliver(DeliveryJob.model_validate_json(record.body))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    if "Records" not in event:  # the EventBridge schedule
        from talkturo.services import events

        return {"queued": events.sweep()}
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
