"""Lambda entry of the billing worker: each SQS message names one stored, verified Stripe
event to apply (talkturo.services.billing.apply_event: credits granted once per payment,
refunds and disputes taken back once each), or an auto-reload to charge
(talkturo.services.auto_reload.charge: once per reload, whatever repeats).

Thin by design. A failure (Stripe or the table cannot be reached) reports the record failed,
so that SQS brings it back; after five receives it goes to the dead-letter queue.
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

from talkturo.domain.billing import BillingJob
from talkturo.logs import logger

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    from talkturo.services import auto_reload, billing

    job = BillingJob.model_validate_json(record.body)
    if job.reload is not None:
        auto_reload.charge(job.reload)
    elif job.event_id is not None:
        billing.apply_event(job.event_id)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
