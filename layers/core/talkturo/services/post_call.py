"""After a call: settle what no voice session settled, write the call's timing and cost, and
analyse it (summary, success, structured data, CRM fields) — SPEC §5, §6.

One job per ended call arrives on the post-call queue (queued once: `calls.queue_post_call`).
Each step is safe to repeat: a job delivered again (a crash, a timeout) finds the steps already
done and does only what is left.
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

from talkturo.domain.assistants import estimate_of
from talkturo.domain.call_insights import cost_breakdown, metrics_of
from talkturo.domain.calls import CallRecord, PostCallJob
from talkturo.domain.catalog import EstimateBreakdown, get_catalog
from talkturo.domain.common import quantize_credits, utcnow
from talkturo.errors import NotFound
from talkturo.logs import logger
from talkturo.services import assistants, credits
from talkturo.services import calls as calls_service
from talkturo.store import calls as store
from talkturo.store import ledger

# How long after its end a call's voice session may still be saving: a job that finds a session
# that started but has not closed within this time settles the call from the carrier's duration.
SESSION_GRACE_SECONDS = 120
CARRIER_SETTLEMENT = "carrier"
_ZERO = Decimal(0)
UNKNOWN_RATES = EstimateBreakdown(
    telephony=_ZERO, llm=_ZERO, voice=_ZERO, transcriber=_ZERO, platform=_ZERO, total=_ZERO
)


class NotYet(Exception):
    """The call is not ready for its post-call work; the job is delivered again later."""


def run(job: PostCallJob) -> None:
    try:
        record = store.get(job.account_id, job.call_id)
    except NotFound:
        logger.info("post-call job for a call that is gone", extra={"id": job.call_id})
        return
    if record.status != "ended":
        raise NotYet(f"call {record.id} is still {record.status}")
    record = settle_unsettled(job.account_id, record)
    record = write_insights(job.account_id, record)


# --------------------------------------------------------------------------- settlement


def needs_carrier_settlement(record: CallRecord) -> bool:
    """A voice session connected and metered the call but never closed (it died): nothing
    recorded what the call cost."""
    return (
        record.voice_session_started
        and not record.session_charges
        and record.settled_by is None
        and bool(record.duration_seconds)
    )


def settle_unsettled(account_id: str, record: CallRecord) -> CallRecord:
    """Bill a call whose voice session died from the carrier's duration, exactly once.

    What the dead session already drew stays; the settlement draws the rest of what the
    carrier's whole seconds cost at the assistant's rate, under one idempotency key, so a job
    run twice draws once. The call's `credits_charged` is then the sum of its ledger entries.
    """
    if not needs_carrier_settlement(record):
        return record
    ended_at = record.ended_at or record.created_at
    if utcnow() - ended_at < timedelta(seconds=SESSION_GRACE_SECONDS):
        raise NotYet(f"call {record.id}: its voice session may still be saving")
    seconds = int(record.duration_seconds or 0)
    assistant = assistants.get_record(account_id, record.assistant_id)
    rate = estimate_of(assistant, get_catalog()).total
    total = quantize_credits(rate * Decimal(math.ceil(seconds)) / Decimal(60))
    drawn = -sum((e.amount for e in ledger.call_entries(account_id, record.id)), Decimal(0))
    rest = total - drawn
    if rest > 0:
        credits.record(
            account_id,
            "usage",
            -rest,
            idempotency_key=f"call:{record.id}:{CARRIER_SETTLEMENT}:settle",
            description=f"call {record.id} (settled from the carrier's duration)",
            reference=record.id,
            allow_negative_balance=True,
        )
    charged = -sum((e.amount for e in ledger.call_entries(account_id, record.id)), Decimal(0))
    logger.warning(
        "call settled from the carrier's duration",
        extra={"id": record.id, "seconds": seconds, "credits": str(charged)},
    )

    def settle(current: CallRecord) -> CallRecord | None:
        if current.session_charges:
            return None  # the session closed after all: its charge is the call's
        return current.model_copy(
            update={
                "session_charges": {CARRIER_SETTLEMENT: charged},
                "session_seconds": {CARRIER_SETTLEMENT: seconds},
                "credits_charged": charged,
                "billed_seconds": seconds,
                "settled_by": "carrier",
            }
        )

    return store.change(account_id, record.id, settle)


# --------------------------------------------------------------------------- timing and cost


def write_insights(account_id: str, record: CallRecord) -> CallRecord:
    """The call's conversation timing and what its charge paid for (repeatable: recomputed
    from the transcript and the charge, the same each time)."""
    messages = (
        calls_service.get_transcript_messages(account_id, record.id)
        if record.transcript_available
        else []
    )
    metrics = metrics_of(messages)
    try:
        assistant = assistants.get_record(account_id, record.assistant_id)
        rates = estimate_of(assistant, get_catalog())
    except NotFound:  # deleted since: the whole charge is shown as one part (platform)
        rates = UNKNOWN_RATES
    cost = cost_breakdown(record.credits_charged, rates)

    def write(current: CallRecord) -> CallRecord | None:
        if current.metrics == metrics and current.cost == cost:
            return None
        return current.model_copy(update={"metrics": metrics, "cost": cost})

    return store.change(account_id, record.id, write)
