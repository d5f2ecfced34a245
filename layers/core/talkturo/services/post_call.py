"""After a call: settle what no voice session settled, write the call's timing and cost, and
analyse it (summary, success, structured data, CRM fields) — SPEC §5, §6.

One job per ended call arrives on the post-call queue (queued once: `calls.queue_post_call`).
Each step is safe to repeat: a job delivered again (a crash, a timeout) finds the steps already
done and does only what is left.
"""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from talkturo.domain.analysis import (
    AnalysisConfig,
    AnalysisContext,
    AnalysisModel,
    AnalysisResult,
    KnownField,
    Usage,
)
from talkturo.domain.assistants import AssistantRecord, estimate_of
from talkturo.domain.call_analysis import (
    AnalysisBrief,
    CallAnalysis,
    brief_of,
    differences,
    effective_config,
)
from talkturo.domain.call_insights import cost_breakdown, metrics_of
from talkturo.domain.calls import CallRecord, PostCallJob, TranscriptMessage
from talkturo.domain.catalog import EstimateBreakdown, get_catalog
from talkturo.domain.common import quantize_credits, utcnow
from talkturo.domain.usage import UsageTags
from talkturo.errors import NotFound
from talkturo.logs import logger
from talkturo.provider_keys import provider_env
from talkturo.services import accounts, assistants, credits, crm_fill, custom_fields, events
from talkturo.services import calls as calls_service
from talkturo.store import analyses, ledger
from talkturo.store import calls as store
from talkturo.voice.providers.base import ProviderError

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
    if job.call_id is None:
        from talkturo.services import analyses as analysis_service

        analysis_service.list_page(job)  # a page of a background re-run's calls
        return
    try:
        record = store.get(job.account_id, job.call_id)
    except NotFound:
        logger.info("post-call job for a call that is gone", extra={"id": job.call_id})
        return
    if record.status != "ended":
        raise NotYet(f"call {record.id} is still {record.status}")
    if job.version is None:
        record = settle_unsettled(job.account_id, record)
        record = write_insights(job.account_id, record)
        # An answered call whose voice session never saved was not announced yet (keyed: once).
        calls_service.announce_ended(job.account_id, record)
    analyze(job.account_id, record, version=job.version or 1, run_id=job.run_id)
    if job.run_id is not None:
        from talkturo.services import analyses as analysis_service

        analysis_service.count(job.account_id, job.run_id, record.id, failed=False)


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
            usage=UsageTags(
                category="calls",
                assistant_id=record.assistant_id,
                campaign_id=record.campaign_id,
                phone_number_id=record.phone_number_id,
            ),
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


# --------------------------------------------------------------------------- analysis


def _context(account_id: str, record: CallRecord, assistant: AssistantRecord) -> AnalysisContext:
    account = accounts.get_account(account_id)
    zone = ZoneInfo(account.default_timezone)
    moment = record.answered_at or record.created_at
    known = [
        KnownField(target=entity, key=d.key, type=d.type, options=d.options)
        for entity in ("contact", "company")
        for d in custom_fields.definitions(account_id, entity)
    ]
    answered_by = record.answered_by if record.answered_by in ("human", "machine") else None
    return AnalysisContext(
        call_date=moment.astimezone(zone).date(),
        language=assistant.transcriber.language,
        llm=AnalysisModel(provider=assistant.llm.provider, model=assistant.llm.model),
        success_criteria=assistant.success_criteria,
        direction=record.direction,
        outcome=record.outcome,
        answered_by=answered_by,
        ended_reason=record.ended_reason,
        custom_fields=known,
    )


def analysis_only(account_id: str, call_id: str) -> AnalysisResult:
    """The analysis of an ended call with the assistant's current configuration, computed and
    returned only: nothing is written on the call or the CRM (a test run judges its test calls
    this way; they get no post-call job). Raises ProviderError when the model cannot answer."""
    record = store.get(account_id, call_id)
    assistant = assistants.get_record(account_id, record.assistant_id)
    config, _ = effective_config(assistant)
    messages = (
        calls_service.get_transcript_messages(account_id, record.id)
        if record.transcript_available
        else []
    )
    return _run_engine(config, messages, _context(account_id, record, assistant))


def _run_engine(
    config: AnalysisConfig, messages: list[TranscriptMessage], context: AnalysisContext
) -> AnalysisResult:
    from talkturo.analysis import analyze as engine_analyze

    return asyncio.run(engine_analyze(config, messages, context, models=provider_models()))


def provider_models() -> Any:
    """The language models the analysis may use: the provider keys of the environment (and,
    on AWS, of the provider keys secret), the local model or the offline stand-in."""
    from talkturo.voice.providers.registry import Providers

    return Providers(provider_env())


def _set_brief(
    account_id: str, call_id: str, brief: AnalysisBrief, *, usage: Usage | None = None
) -> CallRecord:
    """Show `brief` on the call (never over a later version); `usage`: the analysis's model
    tokens, shown with the call's cost."""

    def write(current: CallRecord) -> CallRecord | None:
        held = current.analysis
        both_done = held is not None and held.status == brief.status == "completed"
        if both_done and held is not None and (held.version or 0) > (brief.version or 0):
            return None  # a later version is already shown
        waiting = held.pending_version if held else None
        if waiting is not None and waiting > (brief.version or 0):
            brief_shown = brief.model_copy(update={"pending_version": waiting})
        else:
            brief_shown = brief
        changes: dict[str, object] = {"analysis": brief_shown}
        if usage is not None and current.cost is not None:
            changes["cost"] = current.cost.model_copy(
                update={
                    "analysis_input_tokens": usage.input_tokens,
                    "analysis_output_tokens": usage.output_tokens,
                }
            )
        return current.model_copy(update=changes)

    return store.change(account_id, call_id, write)


def analyze(
    account_id: str, record: CallRecord, *, version: int = 1, run_id: str | None = None
) -> CallAnalysis | None:
    """Write version `version` of the call's analysis (once), then its CRM changes (once).

    A job delivered again finds the version written and only finishes what is left, so the
    model is asked once per version and the CRM is written once."""
    analysis = analyses.get_or_none(account_id, record.id, version)
    if analysis is None:
        try:
            assistant = assistants.get_record(account_id, record.assistant_id)
        except NotFound:
            _set_brief(
                account_id,
                record.id,
                AnalysisBrief(status="failed", version=version, error="the assistant is deleted"),
            )
            return None
        config, notes = effective_config(assistant)
        if version == 1 and run_id is None and not config.enabled:
            _set_brief(account_id, record.id, AnalysisBrief(status="disabled"))
            return None
        messages = (
            calls_service.get_transcript_messages(account_id, record.id)
            if record.transcript_available
            else []
        )
        try:
            result = _run_engine(config, messages, _context(account_id, record, assistant))
        except ProviderError as error:
            if error.retryable:
                raise  # delivered again later; after the last try the call shows failed
            _set_brief(
                account_id,
                record.id,
                AnalysisBrief(status="failed", version=version, error=str(error)[:300]),
            )
            logger.warning("analysis refused", extra={"id": record.id, "why": str(error)})
            return None
        previous = analyses.get_or_none(account_id, record.id, version - 1) if version > 1 else None
        result = result.model_copy(update={"warnings": [*result.warnings, *notes]})
        analysis = CallAnalysis(
            **result.model_dump(),
            call_id=record.id,
            version=version,
            trigger="call_ended" if version == 1 else ("run" if run_id else "reanalyze"),
            run_id=run_id,
            created_at=utcnow(),
            differences=differences(previous, result) if previous is not None else None,
        )
        if not analyses.create(account_id, analysis):
            analysis = analyses.get(account_id, record.id, version)  # another delivery won
        config_used: AnalysisConfig | None = config
    else:
        config_used = None
    if not analysis.crm_applied:
        if config_used is None:  # a delivery after the version was written: its settings now
            try:
                config_used, _ = effective_config(
                    assistants.get_record(account_id, record.assistant_id)
                )
            except NotFound:
                config_used = AnalysisConfig(enabled=False)  # nothing left to fill from
        changes = crm_fill.apply(account_id, record, config_used, analysis)
        analysis = analysis.model_copy(update={"crm_changes": changes, "crm_applied": True})
        analyses.replace(account_id, analysis)
    shown = _set_brief(account_id, record.id, brief_of(analysis), usage=analysis.usage)
    final = analysis
    events.emit(
        account_id,
        "call.analyzed",
        lambda: {
            "call": shown.public().model_dump(mode="json"),
            "analysis": final.model_dump(mode="json"),
        },
        key=f"call.analyzed:{record.id}:{analysis.version}",
    )
    return analysis
