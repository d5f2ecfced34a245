"""Reading a call's analyses, asking for one again, and re-running the analysis over many past
calls in the background (`AnalysisRun`, with progress).

A re-analysis gets its version number when it is asked for (written on the call with its
optimistic lock, so two requests at once get two versions), and the post-call worker writes
that version once. A run lists its calls page by page (one job a page), queueing one
re-analysis job per ended call; each call's job counts once in the run's progress.
"""

from __future__ import annotations

from talkturo import queues
from talkturo.config import get_settings
from talkturo.domain.call_analysis import (
    AnalysisBrief,
    AnalysisRun,
    AnalysisRunCreate,
    CallAnalysis,
)
from talkturo.domain.calls import CallRecord, PostCallJob
from talkturo.domain.common import Page, utcnow
from talkturo.errors import Conflict, InvalidRequest, NotFound
from talkturo.ids import has_prefix, new_id
from talkturo.logs import logger
from talkturo.store import analyses as store
from talkturo.store import calls as call_store

RUN_PAGE = 100


def _call(account_id: str, call_id: str) -> CallRecord:
    if not has_prefix(call_id, "call"):
        raise NotFound("no such call", param="id")
    return call_store.get(account_id, call_id)


def latest(account_id: str, call_id: str) -> CallAnalysis:
    record = _call(account_id, call_id)
    found = store.latest(account_id, call_id)
    if found is None:
        status = record.analysis.status if record.analysis else "pending"
        raise NotFound(
            f"this call has no analysis yet (status {status})",
            param="id",
            code="analysis_not_ready",
        )
    return found


def versions(
    account_id: str, call_id: str, *, limit: int, starting_after: str | None
) -> Page[CallAnalysis]:
    _call(account_id, call_id)
    data, cursor = store.list_versions(
        account_id, call_id, limit=limit, starting_after=starting_after
    )
    return Page[CallAnalysis](data=data, has_more=cursor is not None, next_cursor=cursor)


def version(account_id: str, call_id: str, number: int) -> CallAnalysis:
    _call(account_id, call_id)
    return store.get(account_id, call_id, number)


def _next_version(account_id: str, call_id: str) -> tuple[CallRecord, int]:
    """Reserve the next analysis version on the call record."""
    reserved = 0

    def reserve(current: CallRecord) -> CallRecord:
        nonlocal reserved
        if current.status != "ended":
            raise Conflict(
                "the call is not over yet; it is analysed when it ends",
                param="id",
                code="call_not_ended",
            )
        shown = current.analysis or AnalysisBrief(status="pending")
        reserved = max(current.analysis_requested, shown.version or 0) + 1
        # The version shown stays until the new one is written; the brief says one is coming.
        brief = shown.model_copy(update={"pending_version": reserved})
        return current.model_copy(update={"analysis_requested": reserved, "analysis": brief})

    record = call_store.change(account_id, call_id, reserve)
    return record, reserved


def _queue(job: PostCallJob) -> None:
    url = get_settings().post_call_queue_url
    if not url:
        raise RuntimeError("no post-call queue configured")
    queues.send(url, job.model_dump())


def reanalyze(account_id: str, call_id: str) -> CallRecord:
    """Analyse the call again with the assistant's current configuration (202: the new version
    is written by the post-call worker; the call shows it when done)."""
    _call(account_id, call_id)
    record, number = _next_version(account_id, call_id)
    _queue(PostCallJob(account_id=account_id, call_id=call_id, version=number))
    return record


# --------------------------------------------------------------------------- runs


def _check_scope(account_id: str, request: AnalysisRunCreate) -> None:
    from talkturo.services import assistants, campaigns

    after, before = request.created_after, request.created_before
    if after and before and after > before:
        raise InvalidRequest("created_after must be before created_before", param="created_after")
    try:
        if request.assistant_id:
            assistants.get_record(account_id, request.assistant_id)
        elif request.campaign_id:
            campaigns.get(account_id, request.campaign_id)
    except NotFound:
        param = "assistant_id" if request.assistant_id else "campaign_id"
        raise NotFound(f"no such {param.removesuffix('_id')}", param=param) from None


def create_run(account_id: str, request: AnalysisRunCreate) -> AnalysisRun:
    _check_scope(account_id, request)
    run = AnalysisRun(
        id=new_id("analysis_run"),
        status="queued",
        created_at=utcnow(),
        **request.model_dump(),
    )
    store.create_run(account_id, run)
    _queue(PostCallJob(account_id=account_id, run_id=run.id))
    return run


def get_run(account_id: str, run_id: str) -> AnalysisRun:
    if not has_prefix(run_id, "analysis_run"):
        raise NotFound("no such analysis run", param="id")
    return _finished(account_id, store.get_run(account_id, run_id))


def list_runs(account_id: str, *, limit: int, starting_after: str | None) -> Page[AnalysisRun]:
    data, cursor = store.list_runs(account_id, limit=limit, starting_after=starting_after)
    return Page[AnalysisRun](data=data, has_more=cursor is not None, next_cursor=cursor)


def _finished(account_id: str, run: AnalysisRun) -> AnalysisRun:
    """A run whose every call is counted completes (checked whenever it is read or counted)."""
    done = run.calls_analyzed + run.calls_failed
    if run.status == "running" and run.listing_done and done >= run.calls_found:
        run = run.model_copy(update={"status": "completed", "completed_at": utcnow()})
        return store.save_run(account_id, run)
    return run


def list_page(job: PostCallJob) -> None:
    """One page of a run's calls: a version reserved and a job queued for each ended call,
    then the next page's job (the cursor names it, so a page delivered twice lists the same
    calls, whose reservations are then two versions at worst, never a lost call)."""
    from talkturo.services import calls

    assert job.run_id is not None
    run = store.get_run(job.account_id, job.run_id)
    if run.listing_done:
        return
    page = calls.list_calls(
        job.account_id,
        limit=RUN_PAGE,
        starting_after=job.cursor,
        assistant_id=run.assistant_id,
        campaign_id=run.campaign_id,
        created_after=run.created_after,
        created_before=run.created_before,
    )
    ended = [call for call in page.data if call.status == "ended"]
    for call in ended:
        _, number = _next_version(job.account_id, call.id)
        _queue(
            PostCallJob(account_id=job.account_id, call_id=call.id, version=number, run_id=run.id)
        )
    store.add_found(job.account_id, run.id, len(ended))
    if page.has_more and page.next_cursor:
        _queue(PostCallJob(account_id=job.account_id, run_id=run.id, cursor=page.next_cursor))
        changes: dict[str, object] = {"status": "running"}
    else:
        changes = {"status": "running", "listing_done": True}
    current = store.get_run(job.account_id, run.id)
    _finished(job.account_id, store.save_run(job.account_id, current.model_copy(update=changes)))


def count(account_id: str, run_id: str, call_id: str, *, failed: bool) -> None:
    run = store.count_call(account_id, run_id, call_id, failed=failed)
    _finished(account_id, run)


def fail_run(account_id: str, run_id: str, why: str) -> None:
    try:
        run = store.get_run(account_id, run_id)
    except NotFound:
        return
    if run.status in ("queued", "running"):
        store.save_run(
            account_id,
            run.model_copy(update={"status": "failed", "error": why, "completed_at": utcnow()}),
        )


def fail(account_id: str, call_id: str, version: int, why: str) -> None:
    """The call's analysis could not be done (its job dead-lettered): the call says so."""

    def mark(current: CallRecord) -> CallRecord | None:
        held = current.analysis
        if held is not None and held.status == "completed" and (held.version or 0) >= version:
            return None
        brief = AnalysisBrief(status="failed", version=version, error=why)
        return current.model_copy(update={"analysis": brief})

    try:
        call_store.change(account_id, call_id, mark)
    except NotFound:
        logger.info("analysis failure for a call that is gone", extra={"id": call_id})
