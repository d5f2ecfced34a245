"""Lambda entry of the test-run worker: each SQS message is one scenario of an assistant test
run, played as a simulated call to the voice service and judged.

Thin by design: parse the message, hand it to the test-runs service (which marks the scenario
running, and counts its final result once with a conditional write, so a redelivered message
never counts twice), report the records that failed so that only those are delivered again.
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

from talkturo.domain.test_runs import ScenarioJob
from talkturo.logs import logger

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    from talkturo.services import test_run_play

    test_run_play.run_scenario(ScenarioJob.model_validate_json(record.body))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
