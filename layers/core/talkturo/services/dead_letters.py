"""Dead letters: end the job each one stood for, log it, record it, list the records.

The dead-letter worker (functions/dead_letters/app.py) hands every message of every
dead-letter queue here. Which queue it came from is told by the message's event source ARN,
matched against the dead-letter queues the template gives the worker. Ending a job is
idempotent (each service leaves a job that moved on as it is) and the record is written once
per message, so a dead letter delivered twice changes nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ValidationError

from talkturo.config import get_settings
from talkturo.domain.billing import BillingJob
from talkturo.domain.calls import CallEvent, CallRecord, DialJob, PostCallJob, apply
from talkturo.domain.common import Page, utcnow
from talkturo.domain.contact_imports import ImportChunk
from talkturo.domain.dead_letters import (
    CampaignJobRef,
    DeadLetter,
    DeadLetterQueue,
    Outcome,
    excerpt,
)
from talkturo.domain.events import DeliveryJob
from talkturo.domain.numbers import ProvisionJob
from talkturo.domain.test_runs import ScenarioJob
from talkturo.errors import NotFound
from talkturo.logs import logger
from talkturo.services import calls, contact_imports, numbers
from talkturo.store import dead_letters as store

# What each queue's messages are.
JOB_TYPES: dict[str, type[BaseModel]] = {
    "contact_import": ImportChunk,
    "number_provisioning": ProvisionJob,
    "dial": DialJob,
    "post_call": PostCallJob,
    "campaign": CampaignJobRef,
    "event": DeliveryJob,
    "billing": BillingJob,
    "test_run": ScenarioJob,
}
AUDIENCE_LOST = (
    "the campaign's audience could not be built (audience_status failed; a campaign already "
    "started is cancelled)"
)
CAMPAIGN_JOB_LOST = (
    "the campaign's {kind} job did not run (recorded; the campaign tick still dispatches and "
    "sweeps the campaign every minute)"
)
ANALYSIS_LOST = "the post-call job failed repeatedly: the call's analysis was not done"
ANALYSIS_RUN_LOST = "the analysis run could not list its calls (the run failed)"
PURGE_LOST = (
    "the deleted campaign's contacts were not all removed (recorded; what is left is "
    "unreachable, and sending its purge job again removes it)"
)
DIAL_FAILED_MESSAGE = "the dialer could not place the call after repeated attempts"
BILLING_JOB_LOST = (
    "the Stripe event could not be applied (recorded; `talkturo billing reconcile` shows what "
    "it left undone, and applying it again is safe)"
)
TEST_SCENARIO_LOST = "the test scenario could not be played after repeated attempts"
RELOAD_JOB_LOST = "the auto-reload could not be charged after repeated attempts"
EVENT_JOB_LOST = (
    "the delivery attempt did not run (recorded; the delivery stays pending and the event "
    "sweeper queues it again when it is due)"
)


@dataclass(frozen=True)
class Letter:
    """One message of a dead-letter queue, as the worker received it."""

    source_arn: str
    message_id: str
    body: str
    receive_count: int
    sent_at: datetime | None


def sent_at(sent_timestamp: str | None) -> datetime | None:
    """SQS's SentTimestamp (epoch milliseconds; kept when a message moves to its DLQ)."""
    if not sent_timestamp or not sent_timestamp.isdigit():
        return None
    return datetime.fromtimestamp(int(sent_timestamp) / 1000, tz=UTC)


def queue_of(source_arn: str) -> DeadLetterQueue:
    """Which job's dead-letter queue an event source ARN names (its last part is the queue's
    name, as is the last part of the queue's URL)."""
    settings = get_settings()
    urls: dict[DeadLetterQueue, str] = {
        "contact_import": settings.contact_import_dead_letter_queue_url,
        "number_provisioning": settings.number_provisioning_dead_letter_queue_url,
        "dial": settings.dial_dead_letter_queue_url,
        "post_call": settings.post_call_dead_letter_queue_url,
        "campaign": settings.campaign_dead_letter_queue_url,
        "event": settings.event_dead_letter_queue_url,
        "billing": settings.billing_event_dead_letter_queue_url,
        "test_run": settings.test_run_dead_letter_queue_url,
    }
    name = source_arn.rsplit(":", 1)[-1]
    for queue, url in urls.items():
        if url and url.rstrip("/").rsplit("/", 1)[-1] == name:
            return queue
    return "unknown"


def handle(letter: Letter) -> DeadLetter:
    """Log the dead letter, end its job, record it; raises (the message comes back) only when
    the table cannot be reached."""
    queue = queue_of(letter.source_arn)
    body = excerpt(letter.body)
    logger.error(
        "dead letter",
        extra={
            "queue": queue,
            "message_id": letter.message_id,
            "receive_count": letter.receive_count,
            "first_sent_at": letter.sent_at.isoformat() if letter.sent_at else None,
            "body_excerpt": body,
        },
    )
    outcome = _end(queue, letter.body)
    record = DeadLetter(
        id=letter.message_id,
        queue=queue,
        receive_count=letter.receive_count,
        sent_at=letter.sent_at,
        dead_at=utcnow(),
        account_id=outcome.account_id,
        job=outcome.job,
        action=outcome.action,
        reason=outcome.reason,
        body_excerpt=body,
    )
    if store.record(record):
        logger.error(
            "dead letter handled",
            extra={
                "queue": queue,
                "message_id": letter.message_id,
                "job": outcome.job,
                "action": outcome.action,
                "reason": outcome.reason,
            },
        )
    else:
        logger.warning(
            "dead letter delivered again; recorded before",
            extra={"queue": queue, "message_id": letter.message_id},
        )
    return record


def list_dead_letters(
    *, queue: DeadLetterQueue | None, limit: int, starting_after: str | None
) -> Page[DeadLetter]:
    data, cursor = store.list_page(queue=queue, limit=limit, starting_after=starting_after)
    return Page[DeadLetter](data=data, has_more=cursor is not None, next_cursor=cursor)


def _end(queue: DeadLetterQueue, body: str) -> Outcome:
    if queue == "unknown":
        return Outcome(action="recorded", reason="a queue the dead-letter worker does not know")
    job_type = JOB_TYPES[queue]
    try:
        job = job_type.model_validate_json(body)
    except ValidationError as invalid:
        # Retrying cannot make it valid: recorded, never raised.
        return Outcome(
            action="recorded",
            reason=f"not a valid {queue} job ({invalid.error_count()} problems)",
        )
    if isinstance(job, ImportChunk):
        return contact_imports.fail_dead_chunk(job)
    if isinstance(job, ProvisionJob):
        return numbers.fail_dead_job(job)
    if isinstance(job, DialJob):
        return _fail_undialed(job)
    if isinstance(job, CampaignJobRef):
        if job.type == "build":
            from talkturo.services import campaigns

            campaigns.fail_audience(job.account_id, job.campaign_id)
            return Outcome(
                account_id=job.account_id,
                job=job.campaign_id,
                action="ended",
                reason=AUDIENCE_LOST,
            )
        return Outcome(
            account_id=job.account_id,
            job=job.campaign_id,
            action="recorded",
            reason=PURGE_LOST if job.type == "purge" else CAMPAIGN_JOB_LOST.format(kind=job.type),
        )
    if isinstance(job, ScenarioJob):
        from talkturo.services import test_runs

        counted = test_runs.fail_scenario(job, TEST_SCENARIO_LOST)
        return Outcome(
            account_id=job.account_id,
            job=f"{job.run_id} scenario {job.index}",
            action="ended" if counted is not None else "already_ended",
            reason=TEST_SCENARIO_LOST if counted is not None else "the scenario had reported",
        )
    if isinstance(job, DeliveryJob):
        return Outcome(
            account_id=job.account_id, job=job.delivery_id, action="recorded", reason=EVENT_JOB_LOST
        )
    if isinstance(job, BillingJob):
        if job.reload is not None:
            from talkturo.services import auto_reload

            reason = auto_reload.fail_lost_job(job.reload)
            return Outcome(
                account_id=job.reload.account_id,
                job=f"reload {job.reload.sequence}",
                action="ended",
                reason=f"{RELOAD_JOB_LOST}: {reason}",
            )
        return Outcome(job=job.event_id, action="recorded", reason=BILLING_JOB_LOST)
    assert isinstance(job, PostCallJob)
    return _post_call_lost(job)


def _post_call_lost(job: PostCallJob) -> Outcome:
    """A call's post-call job that never succeeded: the call's analysis says failed (and a
    run counts the call as failed); a run's listing page that never ran fails the run."""
    from talkturo.services import analyses

    if job.call_id is None:
        assert job.run_id is not None
        analyses.fail_run(job.account_id, job.run_id, ANALYSIS_RUN_LOST)
        return Outcome(
            account_id=job.account_id, job=job.run_id, action="ended", reason=ANALYSIS_RUN_LOST
        )
    analyses.fail(job.account_id, job.call_id, job.version or 1, ANALYSIS_LOST)
    if job.run_id is not None:
        analyses.count(job.account_id, job.run_id, job.call_id, failed=True)
    return Outcome(account_id=job.account_id, job=job.call_id, action="ended", reason=ANALYSIS_LOST)


def _fail_undialed(job: DialJob) -> Outcome:
    """A call still queued and never placed ends `failed` (ended_reason `error`); one that
    moved on is left as it is."""
    event = CallEvent(
        at=utcnow(),
        status="ended",
        outcome="failed",
        ended_reason="error",
        duration_seconds=0,
        error_message=DIAL_FAILED_MESSAGE,
    )

    def end(record: CallRecord) -> CallRecord | None:
        if record.status != "queued" or record.carrier_sid:
            return None
        return apply(record, event)

    outcome = Outcome(account_id=job.account_id, job=job.call_id, action="ended", reason="")
    try:
        after = calls.change(job.account_id, job.call_id, end)
    except NotFound:
        return outcome.model_copy(
            update={"action": "already_ended", "reason": "the call no longer exists"}
        )
    if after.status != "ended" or after.error_message != DIAL_FAILED_MESSAGE:
        return outcome.model_copy(
            update={
                "action": "already_ended",
                "reason": f"the call was already {'placed' if after.carrier_sid else after.status}",
            }
        )
    return outcome.model_copy(update={"reason": DIAL_FAILED_MESSAGE})
