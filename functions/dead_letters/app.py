"""Lambda entry of the dead-letter worker: each SQS message is a job that failed every delivery.

Thin by design: hand the message, with the queue it came from (its event source ARN), to the
dead-letter service, which ends the job, logs it and records it; report the records that
failed (the table could not be reached) so that only those are delivered again.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkturo.logs import logger

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    from talkturo.services import dead_letters

    dead_letters.handle(
        dead_letters.Letter(
            source_arn=record.event_source_arn,
            message_id=record.message_id,
            body=record.body,
            receive_count=int(record.attributes.approximate_receive_count or 0),
            sent_at=dead_letters.sent_at(record.attributes.sent_timestamp),
        )
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
