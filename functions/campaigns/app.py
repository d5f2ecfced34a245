"""Lambda entry of the campaign worker: each SQS message is one campaign job (kick, wake, build,
call_ended).

Thin by design: parse the message, hand it to the campaign service, report the records that
failed so that only those are delivered again (partial batch response).
"""

from __future__ import annotations

import importlib
import json
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
    # Imported on first use, like every worker's service (a cold start loads only what it runs).
    campaigns = importlib.import_module("talkturo.services.campaigns")
    campaigns.handle_job(json.loads(record.body))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
