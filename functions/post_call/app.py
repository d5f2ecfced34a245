"""Lambda entry of the post-call worker: each SQS message is one ended call (PostCallJob).

Thin by design: parse the message, hand it to the post-call service, report the records that
failed (or are not ready yet) so that only those are delivered again (partial batch response).
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
from pydantic import ValidationError

from talkturo.domain.calls import PostCallJob
from talkturo.logs import logger

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    from talkturo.services import post_call

    try:
        job = PostCallJob.model_validate_json(record.body)
    except ValidationError:
        # Not the message's content: a body that is no job may hold anything (secrets too).
        raise ValueError("not a valid post-call job (its dead letter records it)") from None
    post_call.run(job)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
