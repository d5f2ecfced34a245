"""The campaign engine (SPEC §8, docs/campaigns.md): lifecycle, audience, dispatch, call ends,
and the tick that sweeps.

Dispatch is driven by events, not by scanning. It runs when a campaign starts or resumes, when
one of its calls ends and cannot hand its slot over (a call's end first gives its slot straight
to the next due contact, in one claim transaction, without the dispatch's turn: _hand_over),
when a wait ends (a retry delay, a window that opens again: a Step Functions wake) and on the
minute tick (backstop). Each run reads the campaign's counters, then only as many due contacts
as there are free slots, and claims each with one transaction that takes an admission (campaign
and account), moves the contact to `queued` and records its call; the dial job follows. Every
dial is checked at claim time: the contact re-read (DNC, phone), attempts left, the call window
and the compliance floor in the callee's time, credits, the campaign still running.

A call's admission is given back exactly once (the slot item is deleted in the transaction that
moves the contact), or handed over to the next contact once (the same deletion, in its claim),
when the carrier reports the call over. A slot whose lease runs out is
looked at by the tick: a call that ended has its end applied; a call never handed to the dialer
is dialled; a call still open keeps its slot a while longer.
"""

from __future__ import annotations

import contextvars
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException

from talkturo import queues, workflows
from talkturo.config import get_settings
from talkturo.domain import compliance
from talkturo.domain.calls import CallRecord, DialJob
from talkturo.domain.campaigns import (
    DIAL_SETTINGS,
    TERMINAL,
    Attempt,
    Campaign,
    CampaignContact,
    CampaignCounters,
    CampaignCreate,
    CampaignJob,
    CampaignProgress,
    CampaignUpdate,
    QueueEntry,
    RecentCall,
    SkipReason,
    after_call,
    audit_text,
    caller_for,
    display_name,
    nobody_left,
    outcome_of,
    transition,
    with_figures,
)
from talkturo.domain.common import Page, utcnow
from talkturo.domain.contacts import Contact, ContactFilters
from talkturo.errors import Conflict, InsufficientCredits, InvalidRequest, NotFound
from talkturo.ids import has_prefix, new_id
from talkturo.logs import logger
from talkturo.services import assistants, campaign_budgets, credits, dialing
from talkturo.store import calls as call_store
from talkturo.store import campaigns as store
from talkturo.store import companies as company_store
from talkturo.store import contacts as contact_store
from talkturo.store import numbers as number_store
from talkturo.store.transact import Contention

BUILD_PAGE = 200
# A deleted campaign's contacts are removed this many per job.
PURGE_PAGE = 500
# A claimed call's slot lease: the tick looks at a slot whose lease ran out (and renews it for a
# call still live), so a lost end gives its slot back within a tick or two of being lost.
LEASE = timedelta(seconds=120)
# Dispatch reads a few more due contacts than it has free slots (some will be skipped).
READ_AHEAD = 5
# Wakes are rounded up to this many seconds, so contacts due close together share one.
WAKE_STEP = 5
ATTEMPTS = 5
# A dispatch's turn: held at most this long by a dispatch that stopped short (a crash); a
# dispatch asked again and again runs this many rounds, then hands on to a job of its own.
TURN_LEASE_MS = 30_000
TURN_ROUNDS = 10
# A call's end handled in the carrier's status callback runs at most this many rounds there.
INLINE_ROUNDS = 2
# A claimed call due now is placed by the worker that claimed it; its dial job, queued beside
# the claim, comes this much later as the backstop (a crash, a retryable carrier error).
DIAL_BACKSTOP_SECONDS = 30
# A call's end handing its slot to the next due contact reads this many of the due head (the
# first ones may be skipped: DNC, outside their window).
HANDOVER_HEAD = 3
# A handover whose head was all lost to other claims or skipped reads the due head again: this
# many reads in all before the end gives its slot back.
HANDOVER_READS = 3


# --------------------------------------------------------------------------- reads


def _check_id(campaign_id: str) -> None:
    if not has_prefix(campaign_id, "campaign"):
        raise NotFound("no such campaign", param="id")


def _read(account_id: str, campaign_id: str) -> tuple[Campaign, int]:
    _check_id(campaign_id)
    return store.get(account_id, campaign_id)


def _shown(account_id: str, campaign: Campaign) -> Campaign:
    return with_figures(campaign, store.counters(account_id, campaign.id))


def get(account_id: str, campaign_id: str) -> Campaign:
    campaign, _ = _read(account_id, campaign_id)
    return _shown(account_id, campaign)


def list_campaigns(
    account_id: str, *, limit: int, starting_after: str | None, status: str | None = None
) -> Page[Campaign]:
    found, cursor = store.list_page(
        account_id, limit=limit, starting_after=starting_after, status=status
    )
    return Page[Campaign](
        data=[_shown(account_id, c) for c in found],
        has_more=cursor is not None,
        next_cursor=cursor,
    )


def progress(account_id: str, campaign_id: str) -> CampaignProgress:
    campaign, _ = _read(account_id, campaign_id)
    counters = store.counters(account_id, campaign_id)
    shown = with_figures(campaign, counters)
    queue = [
        QueueEntry(
            contact_id=c.contact_id,
            name=c.name,
            phone=c.phone,
            next_attempt_at=c.next_attempt_at,
            attempt=c.attempts + 1,
        )
        for c in store.queue_head(account_id, campaign_id, 10)
    ]
    records, _ = call_store.list_page(
        account_id, limit=10, starting_after=None, filters={"campaign_id": campaign_id}
    )
    recent = [
        RecentCall(
            call_id=r.id,
            contact_id=r.contact_id,
            attempt=r.attempt,
            status=r.status,
            outcome=r.outcome,
            created_at=r.created_at,
        )
        for r in records
    ]
    return CampaignProgress(
        campaign_id=campaign_id,
        status=shown.status,
        status_reason=shown.status_reason,
        audience_status=shown.audience_status,
        audience_total=shown.audience_total,
        counts=shown.counts,
        skipped=shown.skipped,
        outcomes=shown.outcomes,
        answer_rate=shown.answer_rate,
        completion_rate=shown.completion_rate,
        in_flight=max(0, counters.in_flight),
        max_concurrent_calls=campaign.max_concurrent_calls,
        queue=queue,
        recent_calls=recent,
        budget=campaign_budgets.budget(account_id, campaign, counters),
    )


def list_contacts(
    account_id: str,
    campaign_id: str,
    *,
    state: str | None,
    limit: int,
    starting_after: str | None,
) -> Page[CampaignContact]:
    _read(account_id, campaign_id)
    found, cursor = store.list_contacts(
        account_id, campaign_id, state=state, limit=limit, starting_after=starting_after
    )
    return Page[CampaignContact](data=found, has_more=cursor is not None, next_cursor=cursor)


def get_contact(account_id: str, campaign_id: str, contact_id: str) -> CampaignContact:
    _read(account_id, campaign_id)
    return store.get_contact(account_id, campaign_id, contact_id)[0]


# --------------------------------------------------------------------------- create, change


def _active_numbers(account_id: str) -> dict[str, str]:
    """id → E.164 of the account's active numbers."""
    return {
        n.id: n.phone_number for n, _ in number_store.all_of(account_id) if n.status == "active"
    }


def _rotation(account_id: str, assistant: Any, wanted: list[str] | None) -> list[str]:
    active = _active_numbers(account_id)
    own = [n for n in assistant.phone_number_ids if n in active]
    if wanted is None:
        if not own:
            raise Conflict(
                "the assistant has no active phone number to call from; assign one first",
                param="assistant_id",
                code="no_active_number",
            )
        return sorted(own)
    if not wanted:
        raise InvalidRequest("give at least one phone number", param="phone_number_ids")
    for index, number_id in enumerate(wanted):
        if number_id not in assistant.phone_number_ids:
            raise InvalidRequest(
                f"{number_id} is not one of the assistant's numbers",
                param=f"phone_number_ids[{index}]",
            )
        if number_id not in active:
            raise InvalidRequest(f"{number_id} is not active", param=f"phone_number_ids[{index}]")
    return list(dict.fromkeys(wanted))


def create(account_id: str, request: CampaignCreate) -> Campaign:
    assistant = assistants.outbound_record(account_id, request.assistant_id)
    rotation = _rotation(account_id, assistant, request.phone_number_ids)
    audience = request.audience
    if audience.type == "company":
        try:
            company_store.get(account_id, str(audience.company_id))
        except NotFound:
            raise NotFound("no such company", param="audience.company_id") from None
    now = utcnow()
    fields = request.model_dump(exclude_none=True, exclude={"audience", "phone_number_ids"})
    campaign = Campaign(
        id=new_id("campaign"),
        audience=audience,
        phone_number_ids=rotation,
        created_at=now,
        updated_at=now,
        **fields,
    )
    store.create(account_id, campaign)
    try:
        _send(CampaignJob(type="build", account_id=account_id, campaign_id=campaign.id))
    except (BotoCoreError, ClientError, RuntimeError):
        # Nothing would ever build it: the audience fails, visibly, and the request with it.
        logger.exception("campaign audience not queued", extra={"id": campaign.id})
        fail_audience(account_id, campaign.id)
        raise
    logger.info("campaign created", extra={"id": campaign.id})
    return _shown(account_id, campaign)


def update(account_id: str, campaign_id: str, request: CampaignUpdate) -> Campaign:
    changes = request.model_dump(exclude_unset=True)
    for _ in range(ATTEMPTS):
        campaign, version = _read(account_id, campaign_id)
        if campaign.status in TERMINAL:
            raise Conflict(
                f"the campaign is {campaign.status}; it can no longer be changed",
                code="campaign_not_editable",
            )
        dial_changes = sorted(set(changes) & DIAL_SETTINGS)
        if dial_changes and campaign.status not in ("draft", "paused"):
            raise Conflict(
                f"{dial_changes[0]} can be changed only while the campaign is draft or paused; "
                f"it is {campaign.status}",
                param=dial_changes[0],
                code="campaign_not_editable",
            )
        values = {k: getattr(request, k) for k in changes if getattr(request, k) is not None}
        if "phone_number_ids" in values:
            assistant = assistants.outbound_record(account_id, campaign.assistant_id)
            values["phone_number_ids"] = _rotation(account_id, assistant, request.phone_number_ids)
        if "description" in changes and request.description is None:
            values["description"] = None
        if "scheduled_start_at" in changes and request.scheduled_start_at is None:
            values["scheduled_start_at"] = None
        if "credit_cap" in changes and request.credit_cap is None:
            values["credit_cap"] = None
        changed = campaign.model_copy(update={**values, "updated_at": utcnow()})
        changed = Campaign.model_validate(changed.model_dump())
        try:
            store.save(account_id, changed, version)
        except Conflict:
            continue
        return _shown(account_id, changed)
    raise Conflict("the campaign changed at the same time; try again")


def delete(account_id: str, campaign_id: str) -> Campaign:
    campaign, version = _read(account_id, campaign_id)
    if campaign.status not in ("draft", "completed", "cancelled"):
        raise Conflict(
            f"the campaign is {campaign.status}; cancel it before deleting it",
            code="campaign_not_deletable",
        )
    try:
        store.delete(account_id, campaign_id, version)
    except store.CallsLive:
        raise Conflict(
            "the campaign's last calls are still live; delete it once they have ended",
            code="campaign_not_deletable",
        ) from None
    try:
        _send(CampaignJob(type="purge", account_id=account_id, campaign_id=campaign_id))
    except (BotoCoreError, ClientError, RuntimeError):
        # The campaign is gone for the user; its contacts stay behind, unreachable.
        logger.exception(
            "deleted campaign's contacts not queued for removal", extra={"id": campaign_id}
        )
    return campaign


def purge(account_id: str, campaign_id: str) -> None:
    """A deleted campaign's contacts, removed a page per job, the next page queued after."""
    try:
        store.get(account_id, campaign_id)
        return  # not deleted after all
    except NotFound:
        pass
    if store.purge_contacts(account_id, campaign_id, PURGE_PAGE):
        _send(CampaignJob(type="purge", account_id=account_id, campaign_id=campaign_id))


# --------------------------------------------------------------------------- lifecycle


def _refused(campaign: Campaign, action: str) -> Conflict:
    return Conflict(
        f"a {campaign.status} campaign cannot {action}",
        param="status",
        code="invalid_campaign_transition",
    )


def _has_credits(account_id: str) -> bool:
    return credits.balance(account_id).balance > 0


def _check_cap(account_id: str, campaign: Campaign, action: str) -> None:
    if campaign_budgets.cap_reached(account_id, campaign):
        raise Conflict(
            f"the campaign's calls have spent its credit_cap ({campaign.credit_cap:.4f}); "
            f"raise or remove credit_cap to {action} it",
            param="credit_cap",
            code="campaign_credit_cap_reached",
        )


NO_PASSING_RUN = (
    "the campaign requires a passing test run of its assistant's current configuration, and "
    "there is none (the assistant changed since, or no run passed): run its test suite "
    "(POST /v1/assistants/{id}/test-runs), or set require_passing_tests to false"
)


def _tests_pass(account_id: str, campaign: Campaign, assistant: Any) -> bool:
    if not campaign.require_passing_tests:
        return True
    from talkturo.services import test_runs

    return test_runs.has_passing_run(account_id, assistant) is not None


def _check_tests(account_id: str, campaign: Campaign, assistant: Any) -> None:
    if not _tests_pass(account_id, campaign, assistant):
        raise Conflict(NO_PASSING_RUN, param="require_passing_tests", code="passing_tests_required")


def _move(
    account_id: str,
    campaign_id: str,
    action: str,
    *,
    reason: str | None = None,
    quiet: bool = False,
) -> Campaign | None:
    """Apply a lifecycle action, with the assistant's running count kept in step; None when
    `quiet` and the action does not apply (the engine's own moves, which may race)."""
    for _ in range(ATTEMPTS):
        campaign, version = _read(account_id, campaign_id)
        target = transition(campaign, action)
        if target is None:
            if quiet:
                return None
            raise _refused(campaign, action)
        now = utcnow()
        changes: dict[str, Any] = {"status": target, "status_reason": reason, "updated_at": now}
        if target == "running" and campaign.started_at is None:
            changes["started_at"] = now
        if target in TERMINAL:
            changes["completed_at"] = now
        was_live = campaign.status in ("running", "paused")
        is_live = target in ("running", "paused")
        delta = 1 if is_live and not was_live else -1 if was_live and not is_live else 0
        changed = campaign.model_copy(update=changes)
        try:
            store.save(account_id, changed, version, assistant_delta=delta)
        except Conflict as error:
            if error.code == "assistant_gone":
                raise
            continue
        logger.info(
            "campaign status changed",
            extra={"id": campaign_id, "from": campaign.status, "to": target, "reason": reason},
        )
        _announce(account_id, campaign.status, changed, version)
        return changed
    raise Conflict("the campaign changed at the same time; try again")


def _announce(account_id: str, previous: str, campaign: Campaign, version: int) -> None:
    """`campaign.status_changed`, once per move (keyed on the version the move was made from)."""
    from talkturo.services import events

    events.emit(
        account_id,
        "campaign.status_changed",
        {
            "campaign": campaign.model_dump(mode="json"),
            "previous_status": previous,
            "status": campaign.status,
            "reason": campaign.status_reason,
        },
        key=f"campaign.status_changed:{campaign.id}:{version}",
    )


def start(account_id: str, campaign_id: str) -> Campaign:
    """Run now, or wait for scheduled_start_at when it is still ahead."""
    campaign, _ = _read(account_id, campaign_id)
    if transition(campaign, "start") is None:
        raise _refused(campaign, "start")
    if campaign.audience_status == "failed":
        raise Conflict(
            "the campaign's audience could not be built; create the campaign again",
            code="audience_failed",
        )
    assistant = assistants.outbound_record(account_id, campaign.assistant_id)
    _rotation(account_id, assistant, campaign.phone_number_ids)
    _check_tests(account_id, campaign, assistant)
    if not _has_credits(account_id):
        raise InsufficientCredits("the account has no credits left; buy credits to start")
    _check_cap(account_id, campaign, "start")
    at = campaign.scheduled_start_at
    if campaign.status == "draft" and at is not None and at > utcnow():
        scheduled = _move(account_id, campaign_id, "schedule")
        assert scheduled is not None
        workflows.schedule_wake(
            _wake_name(campaign_id, "start", at),
            at,
            CampaignJob(type="start", account_id=account_id, campaign_id=campaign_id).model_dump(),
        )
        return _shown(account_id, scheduled)
    running = _move(account_id, campaign_id, "start")
    assert running is not None
    _kick(account_id, campaign_id)
    return _shown(account_id, running)


def pause(account_id: str, campaign_id: str) -> Campaign:
    paused = _move(account_id, campaign_id, "pause", reason="paused by the user")
    assert paused is not None
    return _shown(account_id, paused)


def resume(account_id: str, campaign_id: str) -> Campaign:
    campaign, _ = _read(account_id, campaign_id)
    if transition(campaign, "resume") is None:
        raise _refused(campaign, "resume")
    if not _has_credits(account_id):
        raise InsufficientCredits("the account has no credits left; buy credits to resume")
    _check_cap(account_id, campaign, "resume")
    resumed = _move(account_id, campaign_id, "resume")
    assert resumed is not None
    _kick(account_id, campaign_id)
    return _shown(account_id, resumed)


def cancel(account_id: str, campaign_id: str) -> Campaign:
    cancelled = _move(account_id, campaign_id, "cancel", reason="cancelled by the user")
    assert cancelled is not None
    return _shown(account_id, cancelled)


def numbers_in_use(account_id: str) -> dict[str, str]:
    """number id → the campaign (not ended) that rotates it."""
    used: dict[str, str] = {}
    for campaign in store.live_of_account(account_id):
        if campaign.status in ("scheduled", "running", "paused"):
            for number_id in campaign.phone_number_ids:
                used.setdefault(number_id, campaign.id)
    return used


# --------------------------------------------------------------------------- jobs


def _send(job: CampaignJob, delay_seconds: int = 0) -> None:
    queues.send(
        get_settings().campaign_queue_url,
        job.model_dump(exclude_none=True),
        delay_seconds=delay_seconds,
    )


def _kick(account_id: str, campaign_id: str) -> None:
    _send(CampaignJob(type="dispatch", account_id=account_id, campaign_id=campaign_id))


def _wake_name(campaign_id: str, reason: str, at: datetime) -> str:
    return f"{campaign_id}-{reason}-{math.ceil(at.timestamp())}"


def _wake_dispatch(account_id: str, campaign_id: str, at: datetime) -> None:
    if at <= utcnow() + workflows.DUE_WITHIN:
        _kick(account_id, campaign_id)
        return
    seconds = math.ceil(at.timestamp() / WAKE_STEP) * WAKE_STEP
    moment = datetime.fromtimestamp(seconds, at.tzinfo)
    job = CampaignJob(type="dispatch", account_id=account_id, campaign_id=campaign_id)
    workflows.schedule_wake(_wake_name(campaign_id, "dispatch", moment), moment, job.model_dump())


def handle_job(message: dict[str, Any]) -> None:
    """One campaign queue message (functions/campaigns)."""
    job = CampaignJob.model_validate(message)
    if job.type == "build":
        build(job)
    elif job.type == "start":
        start_scheduled(job.account_id, job.campaign_id)
    elif job.type == "dispatch":
        dispatch(job.account_id, job.campaign_id)
    elif job.type == "call_ended" and job.call_id:
        try:
            call_changed(job.account_id, job.campaign_id, job.call_id, final=job.final)
        except NotFound:
            return  # the campaign was deleted: late news of one of its calls changes nothing
    elif job.type == "purge":
        purge(job.account_id, job.campaign_id)


def start_scheduled(account_id: str, campaign_id: str) -> None:
    """A scheduled campaign's start time came (a wake, or the tick)."""
    try:
        campaign, _ = store.get(account_id, campaign_id)
    except NotFound:
        return
    if campaign.status != "scheduled":
        return
    if campaign.scheduled_start_at and campaign.scheduled_start_at > utcnow():
        return  # rescheduled later: its own wake comes then
    if not _tests_pass(
        account_id, campaign, assistants.get_record(account_id, campaign.assistant_id)
    ):
        # Stays scheduled, saying why; the tick tries again each minute until a run passes.
        _hold(account_id, campaign_id, NO_PASSING_RUN)
        return
    if _move(account_id, campaign_id, "start", quiet=True) is not None:
        dispatch(account_id, campaign_id)


def _hold(account_id: str, campaign_id: str, reason: str) -> None:
    campaign, version = store.get(account_id, campaign_id)
    if campaign.status != "scheduled" or campaign.status_reason == reason:
        return
    logger.info("scheduled campaign held", extra={"id": campaign_id, "reason": reason})
    try:
        store.save(account_id, campaign.model_copy(update={"status_reason": reason}), version)
    except Conflict:
        return  # changed meanwhile: the next tick looks again


# --------------------------------------------------------------------------- the audience


def _audience_page(
    account_id: str, campaign: Campaign, cursor: str | None, position: int
) -> tuple[list[Contact], str | None]:
    audience = campaign.audience
    if audience.type == "contacts":
        ids = (audience.contact_ids or [])[position : position + BUILD_PAGE]
        found = contact_store.get_many(account_id, ids)
        more = position + BUILD_PAGE < len(audience.contact_ids or [])
        return [found[i] for i in ids if i in found], "more" if more else None
    filters = ContactFilters(
        company_id=audience.company_id, tag=audience.tag, lead_status=audience.lead_status
    )
    return contact_store.list_page(account_id, filters, limit=BUILD_PAGE, starting_after=cursor)


def _member(campaign: Campaign, contact: Contact, position: int) -> CampaignContact:
    member = CampaignContact(
        campaign_id=campaign.id,
        contact_id=contact.id,
        name=display_name(contact.first_name, contact.last_name),
        phone=contact.phone,
        position=position,
        next_attempt_at=campaign.created_at,
    )
    reason: SkipReason | None = None
    if contact.do_not_call:
        reason = "dnc"
    elif not contact.phone:
        reason = "no_phone"
    if reason:
        member.state, member.skip_reason, member.next_attempt_at = "skipped", reason, None
    return member


def build(job: CampaignJob) -> None:
    """Materialise one page of the audience, then queue the next page or mark it ready."""
    try:
        campaign, _ = store.get(job.account_id, job.campaign_id)
    except NotFound:
        return
    if campaign.audience_status != "building":
        return
    contacts, cursor = _audience_page(job.account_id, campaign, job.cursor, job.position)
    members = [_member(campaign, c, job.position + i) for i, c in enumerate(contacts)]
    store.add_contacts(job.account_id, campaign.id, members)
    if cursor is not None:
        _send(
            CampaignJob(
                type="build",
                account_id=job.account_id,
                campaign_id=campaign.id,
                cursor=cursor if campaign.audience.type != "contacts" else None,
                position=job.position + BUILD_PAGE,
            )
        )
        return
    for _ in range(ATTEMPTS):
        campaign, version = store.get(job.account_id, job.campaign_id)
        if campaign.audience_status != "building":
            return
        ready = campaign.model_copy(update={"audience_status": "ready", "updated_at": utcnow()})
        try:
            store.save(job.account_id, ready, version)
        except Conflict:
            continue
        break
    logger.info("campaign audience ready", extra={"id": campaign.id})
    if campaign.status == "running":
        dispatch(job.account_id, campaign.id)


def fail_audience(account_id: str, campaign_id: str) -> None:
    """The audience's build job could not be done (a dead letter)."""
    for _ in range(ATTEMPTS):
        try:
            campaign, version = store.get(account_id, campaign_id)
        except NotFound:
            return
        if campaign.audience_status != "building":
            return
        failed = campaign.model_copy(update={"audience_status": "failed", "updated_at": utcnow()})
        try:
            store.save(account_id, failed, version)
        except Conflict:
            continue
        if campaign.status in ("running", "paused", "scheduled"):
            _move(account_id, campaign_id, "cancel", reason="the audience could not be built")
        return


# --------------------------------------------------------------------------- dispatch


# The status reason of a campaign that paused itself at its credit cap.
CAP_REASON = "credit_cap"


class _Run:
    """What one round of a dispatch reads once: the campaign; and what its dispatch reads once
    for all its rounds (`kept`): the account's numbers and dialing lines, the assistant."""

    def __init__(self, account_id: str, campaign: Campaign, kept: dict[str, Any]) -> None:
        self.account_id = account_id
        self.campaign = campaign
        if not kept:  # the assistant is read beside the numbers and the dialing settings
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kept") as pool:
                assistant = pool.submit(assistants.get_record, account_id, campaign.assistant_id)
                held = [number for number, _ in number_store.all_of(account_id)]
                kept["numbers"] = {n.id: n.phone_number for n in held if n.status == "active"}
                kept["lines"] = dialing.lines_of(account_id, held)
                kept["assistant"] = assistant.result()
        self.numbers: dict[str, str] = kept["numbers"]
        self.lines = kept["lines"]
        self.assistant = kept["assistant"]
        self.window = campaign.call_window.rule()
        self.next_wake: datetime | None = None
        self._waking = threading.Lock()  # the round's claims run side by side
        self._dials: list[Future[None]] = kept.setdefault("dials", [])

    def dial_soon(self, call: CallRecord) -> None:
        """Place the claimed call beside the round; the dispatch waits for it once it has given
        its turn back (a Lambda invocation must not end with a dial still under way)."""
        context = contextvars.copy_context()  # the worker's log tags go along
        self._dials.append(
            _dialing.submit(context.run, _dial_now, self.account_id, call, self.assistant)
        )

    def wake_at(self, moment: datetime) -> None:
        with self._waking:
            if self.next_wake is None or moment < self.next_wake:
                self.next_wake = moment


def dispatch(
    account_id: str,
    campaign_id: str,
    campaign: Campaign | None = None,
    *,
    rounds: int = TURN_ROUNDS,
) -> int:
    """Fill the campaign's free slots with due contacts; the number of calls placed.
    (`campaign`: the campaign as just read, to save reading it again; `rounds`: how many
    rounds it runs for dispatches asked of it before handing on to a job.)

    One dispatch of a campaign runs at a time (its turn, a conditional write with a lease):
    dispatches racing for the same free slots would claim the same due contacts and lose all
    but one claim. One asked for while another runs only tells that one to run once more, and
    returns 0; the runner gives the turn back only when nobody asked since it began its last
    round."""
    token = uuid.uuid4().hex
    seen = store.take_turn(account_id, campaign_id, token, _now_ms(), TURN_LEASE_MS)
    if seen is None:
        return 0
    placed = 0
    kept: dict[str, Any] = {}
    try:
        for _ in range(rounds):
            placed += _fill(account_id, campaign_id, campaign, kept)
            campaign = None  # read afresh in the next round
            seen = store.end_turn(account_id, campaign_id, token, seen, _now_ms(), TURN_LEASE_MS)
            if seen is None:
                return placed
    except BaseException:
        store.drop_turn(account_id, campaign_id, token)
        raise
    finally:
        wait(kept.get("dials", []))  # after the turn is given back: the next round goes on
    # Asked again after every round: the next rounds run in a job of their own.
    store.drop_turn(account_id, campaign_id, token)
    _kick(account_id, campaign_id)
    return placed


def _now_ms() -> int:
    return int(utcnow().timestamp() * 1000)


def _fill(
    account_id: str, campaign_id: str, campaign: Campaign | None, kept: dict[str, Any]
) -> int:
    """One round of a dispatch (`kept`: what its rounds share, see _Run)."""
    if campaign is None:
        try:
            campaign, _ = store.get(account_id, campaign_id)
        except NotFound:
            return 0
    if campaign.status != "running":
        return 0
    # The counters and the due head are read at once (the head as long as the campaign's limit
    # allows, then cut to its free slots); with someone due, the balance beside what the
    # dispatch keeps. Each is a request the freed slot would wait on one after another.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="round") as pool:
        heading = pool.submit(
            store.due, account_id, campaign_id, utcnow(), campaign.max_concurrent_calls + READ_AHEAD
        )
        counters = store.counters(account_id, campaign_id)
        due_head = heading.result()
    free = campaign.max_concurrent_calls - counters.in_flight
    placed = 0
    if free > 0:
        due = due_head[: free + READ_AHEAD]
        run: _Run | None = None
        if due:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="round") as pool:
                funded = pool.submit(_has_credits, account_id)
                run = _Run(account_id, campaign, kept)
                if not funded.result():
                    _move(account_id, campaign_id, "pause", reason="no_credits", quiet=True)
                    return 0
            cap = campaign_budgets.cap_check(
                account_id, campaign, counters.in_flight, run.assistant
            )
            if cap == "pause":
                _move(account_id, campaign_id, "pause", reason=CAP_REASON, quiet=True)
                return 0
            if cap == "wait":  # the calls in flight may reach the cap; their ends dispatch again
                return 0
        if run is not None:
            placed = _claim_side_by_side(run, due, free)
        wake = run.next_wake if run is not None else None
        if placed < free:
            head = store.queue_head(account_id, campaign_id, 1)
            if head and head[0].next_attempt_at and head[0].next_attempt_at > utcnow():
                wake = min(wake or head[0].next_attempt_at, head[0].next_attempt_at)
        if wake is not None:
            _wake_dispatch(account_id, campaign_id, wake)
    if placed == 0:
        _complete_if_done(account_id, campaign, counters)
    return placed


def _claim_side_by_side(run: _Run, due: list[tuple[CampaignContact, int]], free: int) -> int:
    """Claim due contacts for up to `free` slots, as many claims at once as slots are still to
    fill (a contact skipped makes room for the next one); the number of calls placed.

    Each claim is the same conditional transaction it would be one after another: the admission
    counter, not this, holds the limit. A round never has more claims under way than free
    slots, so none is wasted on a full campaign; all of them have ended when this returns."""
    placed = 0
    stopped = False
    failure: BaseException | None = None
    waiting = iter(due)
    running: set[Future[str]] = set()
    with ThreadPoolExecutor(max_workers=free, thread_name_prefix="claim") as pool:

        def launch() -> None:
            while not stopped and placed + len(running) < free:
                candidate = next(waiting, None)
                if candidate is None:
                    return
                running.add(pool.submit(_try_dial, run, *candidate))

        launch()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for claim in finished:
                running.discard(claim)
                error = claim.exception()
                if error is not None:  # Full ends the round; others are raised once all ended
                    stopped = True
                    if not isinstance(error, store.Full):
                        failure = failure or error
                    continue
                outcome = claim.result()
                if outcome == "placed":
                    placed += 1
                elif outcome == "stop":
                    stopped = True
            launch()
    if failure is not None:
        raise failure
    return placed


def _complete_if_done(account_id: str, campaign: Campaign, counters: CampaignCounters) -> None:
    """Complete the campaign when nobody is left. `counters` were read before this run moved
    contacts: when they already show contacts waiting that it did not touch, nothing is read
    again."""
    if campaign.status != "running" or campaign.audience_status != "ready":
        return
    if counters.in_flight > 0:
        return
    fresh = store.counters(account_id, campaign.id)
    if nobody_left(fresh, audience_ready=True):
        _move(account_id, campaign.id, "complete", reason="every contact is done", quiet=True)


def _skip(
    account_id: str,
    member: CampaignContact,
    version: int,
    reason: SkipReason,
    detail: str | None = None,
) -> None:
    after = member.model_copy(
        update={
            "state": "skipped",
            "skip_reason": reason,
            "skip_detail": detail,
            "next_attempt_at": None,
        }
    )
    store.save_contact(account_id, member, after, version, skipped=reason)


def _try_dial(
    run: _Run, member: CampaignContact, version: int, handover: store.Handover | None = None
) -> str:
    """Claim one due contact and place its call: `placed`, `skipped` (not dialled now), `lost`
    (the claim's transaction was refused: the contact moved meanwhile), or `stop` (nothing more
    can be dialled in this run). `member` is as the due index holds it: every write below is
    conditioned on its version, so a contact that moved meanwhile is left alone. `handover`:
    the claim takes that ended call's slot (see _hand_over; store.HandoverGone: that slot was
    given back meanwhile)."""
    account_id, campaign = run.account_id, run.campaign
    now = utcnow()
    if member.state != "pending" or not member.next_attempt_at or member.next_attempt_at > now:
        return "skipped"
    try:
        contact = contact_store.get(account_id, member.contact_id)
    except NotFound:
        _skip(account_id, member, version, "no_phone", "the contact was deleted")
        return "skipped"
    if contact.do_not_call:
        _skip(account_id, member, version, "dnc", "marked do-not-call")
        return "skipped"
    if not contact.phone:
        _skip(account_id, member, version, "no_phone")
        return "skipped"
    if member.attempts >= campaign.max_attempts:  # a campaign edited to fewer attempts
        after = member.model_copy(update={"state": "exhausted", "next_attempt_at": None})
        store.save_contact(account_id, member, after, version)
        return "skipped"
    caller_id = caller_for(member, campaign.phone_number_ids, set(run.numbers))
    if caller_id is None:
        _move(account_id, campaign.id, "pause", reason="no_active_number", quiet=True)
        return "stop"
    try:
        destination = dialing.check(
            account_id,
            contact.phone,
            caller_id=run.numbers[caller_id],
            param="phone",
            lines=run.lines,
        )
    except InvalidRequest as refused:
        _skip(account_id, member, version, "invalid_number", refused.message)
        return "skipped"
    callee = compliance.Callee(
        phone=destination.number,
        timezone=contact.timezone,
        recent_dials=tuple(a.dialed_at for a in member.history),
    )
    decision = compliance.decide(run.window, callee, now)
    if decision.allowed:
        settings = get_settings()
        interval = max(1, round(1000 / settings.dial_calls_per_second))
        at_ms = store.reserve_dial_time(account_id, int(now.timestamp() * 1000), interval)
        dial_at = datetime.fromtimestamp(at_ms / 1000, now.tzinfo)
        if dial_at - now > timedelta(seconds=1):
            # Paced: the call rings later, and must still be inside the window then.
            decision = compliance.decide(run.window, callee, dial_at)
    if not decision.allowed:
        if decision.permanent or decision.next_open is None:
            _skip(account_id, member, version, "outside_compliance", decision.rule)
            return "skipped"
        later = member.model_copy(update={"next_attempt_at": decision.next_open})
        store.save_contact(account_id, member, later, version)
        run.wake_at(decision.next_open)
        return "skipped"
    attempt = member.attempts + 1
    call = CallRecord(
        id=new_id("call"),
        direction="outbound",
        status="queued",
        assistant_id=campaign.assistant_id,
        phone_number_id=caller_id,
        from_number=run.numbers[caller_id],
        to_number=destination.number,
        to_extension=destination.extension,
        contact_id=contact.id,
        company_id=contact.company_id,
        campaign_id=campaign.id,
        attempt=attempt,
        created_at=now,
        max_duration_seconds=run.assistant.telephony.max_call_duration_seconds,
    )
    entry = Attempt(
        attempt=attempt,
        call_id=call.id,
        dialed_at=dial_at,
        rule=audit_text(decision.rule, attempt, campaign.max_attempts),
        timezone=decision.timezone,
        local_time=decision.local_time.isoformat(timespec="seconds")
        if decision.local_time
        else None,
    )
    claimed = member.model_copy(
        update={
            "state": "queued",
            "attempts": attempt,
            "next_attempt_at": None,
            "caller_phone_number_id": caller_id,
            "last_call_id": call.id,
            "name": display_name(contact.first_name, contact.last_name),
            "phone": destination.number,
            "history": [*member.history, entry][-10:],
        }
    )
    settings = get_settings()
    if not store.claim(
        account_id,
        before=member,
        after=claimed,
        version=version,
        call=call,
        limit=campaign.max_concurrent_calls,
        account_cap=settings.campaign_account_max_concurrent,
        lease_until=now + LEASE,
        handover=handover,
    ):
        return "lost"
    # Due now (not paced to later): placed here, with the dial job as the backstop.
    now_due = dial_at <= utcnow() and settings.knows_public_url
    delay = (
        DIAL_BACKSTOP_SECONDS
        if now_due
        else max(0, min(900, math.floor((dial_at - utcnow()).total_seconds())))
    )
    if now_due:  # on its way before the backstop is queued: the call does not wait on that
        run.dial_soon(call)
    job = DialJob(account_id=account_id, call_id=call.id, not_before=dial_at)
    try:
        queues.send(settings.dial_queue_url, job.model_dump(mode="json"), delay_seconds=delay)
    except (BotoCoreError, ClientError, RuntimeError):
        # The call is recorded with its slot: the tick sends the dial job again.
        logger.exception("campaign call could not be queued", extra={"id": call.id})
    placed = {"campaign": campaign.id, "call": call.id, "attempt": attempt}
    if handover is not None:  # the ended call whose slot it took
        placed["slot_of"] = handover.call_id
    logger.info("campaign call placed", extra=placed)
    return "placed"


# Claimed calls on their way to the carrier, beside the rounds that claimed them (a round does
# not wait on the carrier, so the ends asking for the next round do not either).
_dialing = ThreadPoolExecutor(max_workers=16, thread_name_prefix="dial")


def _dial_now(account_id: str, call: CallRecord, assistant: Any) -> None:
    """The claimed call to the carrier from this worker; whatever fails is the backstop's."""
    from talkturo.services import calls

    try:
        calls.dial_claimed(account_id, call, assistant)
    except Exception:  # noqa: BLE001 - the dial job (or the tick's sweep) dials it once
        logger.exception("campaign call not dialled yet", extra={"id": call.id})


# --------------------------------------------------------------------------- call ends


def notify_call(account_id: str, call: CallRecord, *, final: bool = False) -> None:
    """A campaign call moved (ringing, answered, its outcome corrected) or, `final`, the carrier
    says it is over (the slot may be given back: the carrier no longer counts it). Called by
    the calls service; a failure here never fails the carrier's callback (the tick finds the
    call through its slot)."""
    if not call.campaign_id:
        return
    job = CampaignJob(
        type="call_ended",
        account_id=account_id,
        campaign_id=call.campaign_id,
        call_id=call.id,
        final=final,
    )
    try:
        _send(job)
    except (BotoCoreError, ClientError, RuntimeError):
        logger.exception("campaign not told of its call", extra={"id": call.id})


def end_call(account_id: str, call: CallRecord) -> None:
    """The carrier says a campaign call is over: give its slot back and refill it here, in the
    carrier's status callback, with no queue between the end and the refill. The callback
    answers the carrier soon: a dispatch asked for again meanwhile hands on to a job after
    INLINE_ROUNDS. What fails here is left to the campaign queue (its job applies the end
    exactly once; the kick refills a slot given back before the failure); if the queue fails
    too, the tick sweeps the slot."""
    if not call.campaign_id:
        return
    try:
        call_changed(
            account_id, call.campaign_id, call.id, final=True, rounds=INLINE_ROUNDS, call=call
        )
    except NotFound:
        return
    except (PynamoDBException, BotoCoreError, ClientError, Conflict, Contention, RuntimeError):
        logger.exception("campaign call end left to the queue", extra={"id": call.id})
        notify_call(account_id, call, final=True)
        try:
            _kick(account_id, call.campaign_id)
        except (BotoCoreError, ClientError, RuntimeError):
            logger.exception("campaign not kicked after a call end", extra={"id": call.id})


def call_changed(
    account_id: str,
    campaign_id: str,
    call_id: str,
    *,
    final: bool = False,
    rounds: int = TURN_ROUNDS,
    call: CallRecord | None = None,
) -> None:
    """Apply what a campaign call's record now says to its contact; refill the slot it frees
    once the carrier reports the call over (`final`; `rounds`: see dispatch; `call`: the
    record as just written, to save reading it again)."""
    if call is None:
        try:
            call = call_store.get(account_id, call_id)
        except NotFound:
            return
    if call.contact_id is None:
        return
    try:
        member, version = store.get_contact(account_id, campaign_id, call.contact_id)
    except NotFound:
        return
    if member.last_call_id != call_id:
        # An older attempt's late news: only its slot, if it still holds one, is given back.
        if call.status == "ended":
            _release_stale(account_id, member, call)
        return
    if call.status != "ended":
        if member.state == "queued" and call.status in ("ringing", "in_progress"):
            store.save_contact(
                account_id, member, member.model_copy(update={"state": "calling"}), version
            )
        return
    if not final:
        entry = next((a for a in member.history if a.call_id == call_id), None)
        if entry is not None and entry.outcome is not None:  # applied: a corrected outcome
            campaign, _ = store.get(account_id, campaign_id)
            _correct_outcome(account_id, campaign, member, version, call)
        return
    _apply_end(
        account_id,
        member,
        version,
        call,
        refill=lambda campaign: dispatch(account_id, campaign_id, campaign, rounds=rounds),
        hand_over=True,
    )


def _ended_member(campaign: Campaign, member: CampaignContact, call: CallRecord) -> CampaignContact:
    outcome = outcome_of(call.outcome)
    settings = get_settings()
    nxt = after_call(
        member,
        outcome,
        ended_at=call.ended_at or utcnow(),
        max_attempts=campaign.max_attempts,
        retry=campaign.retry,
        delay_scale=settings.campaign_delay_scale,
        opted_out=call.opted_out,
    )
    history = [
        a.model_copy(update={"outcome": outcome}) if a.call_id == call.id else a
        for a in member.history
    ]
    return member.model_copy(
        update={
            "state": nxt.state,
            "next_attempt_at": nxt.next_attempt_at,
            "last_outcome": outcome,
            "history": history,
        }
    )


def _apply_end(
    account_id: str,
    member: CampaignContact,
    version: int,
    call: CallRecord,
    *,
    refill: Callable[[Campaign], object] | None = None,
    hand_over: bool = False,
) -> bool:
    """Give the call's slot back and move its contact; True when this did (exactly once).
    `refill`, given the campaign as read here, is run once the slot is free, before the
    contact's next attempt is scheduled (the freed slot waits on nothing else). `hand_over`:
    first try to give the slot straight to the next due contact (_hand_over); the slot is given
    back and `refill` run only when that did not happen.

    When the slot was given back already, a corrected outcome (a late answering-machine verdict
    turning `answered` into `voicemail`) still moves the contact and the outcome counts."""
    began = time.monotonic()
    campaign, _ = store.get(account_id, member.campaign_id)
    handed, tried = "not_tried", 0
    # Only a contact still on this call holds its slot (a repeated callback finds it moved on).
    if hand_over and campaign.status == "running" and member.state in ("queued", "calling"):
        after = _ended_member(campaign, member, call)
        handed, tried = _hand_over(account_id, campaign, member, version, call, after)
        if handed == "placed":
            _log_freed(call, (handed, tried), None, began)
            if after.next_attempt_at is not None:
                _wake_dispatch(account_id, campaign.id, after.next_attempt_at)
            return True
    for _ in range(ATTEMPTS):
        after = _ended_member(campaign, member, call)
        try:
            released = store.release(
                account_id,
                call.id,
                before=member,
                after=after,
                version=version,
                outcome=after.last_outcome,
            )
        except Conflict:
            member, version = store.get_contact(account_id, member.campaign_id, member.contact_id)
            if member.last_call_id != call.id:
                return False
            continue
        if released:
            try:
                if refill is not None:
                    _log_freed(call, (handed, tried), refill(campaign), began)
            finally:
                if after.next_attempt_at is not None:
                    _wake_dispatch(account_id, campaign.id, after.next_attempt_at)
            return True
        _correct_outcome(account_id, campaign, member, version, call)
        return False
    return False


def _log_freed(call: CallRecord, handed: tuple[str, int], refilled: object, began: float) -> None:
    """How a call's end refilled its slot, for the refill's latency: `handover` and `tried` are
    _hand_over's answer (`placed`, or why not; how many contacts it tried), `refilled` what the
    dispatch asked for then placed (0 also when a running round was only asked to look again),
    `ms` the end's handling until then, `since_end_ms` the time since the carrier's end."""
    now = utcnow()
    freed: dict[str, object] = {
        "campaign": call.campaign_id,
        "call": call.id,
        "handover": handed[0],
        "tried": handed[1],
        "ms": round(1000 * (time.monotonic() - began)),
    }
    if refilled is not None:
        freed["refilled"] = refilled
    if call.ended_at is not None:
        freed["since_end_ms"] = round(1000 * (now - call.ended_at).total_seconds())
    logger.info("campaign slot freed", extra=freed)


def _hand_over(
    account_id: str,
    campaign: Campaign,
    member: CampaignContact,
    version: int,
    call: CallRecord,
    after: CampaignContact,
) -> tuple[str, int]:
    """The ended call's slot claimed for the next due contact, without the dispatch's turn (an
    end arriving while a round runs would otherwise wait for that round and the next); when it
    was, the ended contact moved to `after` in the same transaction.

    The checks are a round's claim's (_try_dial: the contact re-read for DNC and its phone,
    the dialing rules, attempts, the window and compliance at the moment it rings, pacing), with
    the credits and the cap read beside the due head. The claim's transaction deletes the ended
    call's slot and writes the new one, conditioned on both contacts' versions and on the limits
    as a claim is, so a contact the running round claimed meanwhile fails it.

    Answers how many contacts it tried, and `placed` when the slot was handed over; else why
    not, and the end goes the usual way:
    `nobody_due`, `no_credits`, `cap` (the credit cap says wait or pause), `skipped` (every
    contact read was skipped), `lost` (a claim's transaction was refused: the contact moved
    meanwhile), `full` (a limit lowered meanwhile), `gone` (the ended call's slot was given back
    or its contact moved meanwhile), `stop` (nothing more can be dialled).

    Ends close together read the same head, and a round may be claiming it too: a claim that
    lost its contact goes on to another one (_hand_to_first), and a head used up that way (or
    all skipped) is read again, the contacts tried left out, up to HANDOVER_READS reads in all.
    The claim's conditions make each new try safe."""
    kept: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="handover") as pool:
        heading = pool.submit(store.due, account_id, campaign.id, utcnow(), HANDOVER_HEAD)
        funded = pool.submit(_has_credits, account_id)
        # The calls in flight matter only to a credit cap (the transaction holds the limits).
        counting = (
            pool.submit(store.counters, account_id, campaign.id)
            if campaign.credit_cap is not None
            else None
        )
        run = _Run(account_id, campaign, kept)
        # The ended contact is not due; an index entry lagging behind it is left out (one
        # transaction cannot write the same item twice).
        due = [(m, v) for m, v in heading.result() if m.contact_id != member.contact_id]
        has_credits = funded.result()
        in_flight = counting.result().in_flight if counting is not None else 0
    if not due:
        return "nobody_due", 0
    if not has_credits:
        return "no_credits", 0
    # The ended call still counts in the counters read: the cap is judged without it.
    cap = campaign_budgets.cap_check(account_id, campaign, in_flight - 1, run.assistant)
    if cap != "dial":
        return "cap", 0
    handover = store.Handover(
        call_id=call.id,
        before=member,
        after=after,
        version=version,
        outcome=after.last_outcome,
    )
    tried = {member.contact_id}
    outcome = "nobody_due"
    try:
        for reading in range(HANDOVER_READS):
            if reading:  # the head as it is now, without the contacts tried already
                fresh = store.due(account_id, campaign.id, utcnow(), HANDOVER_HEAD + len(tried))
                due = [(m, v) for m, v in fresh if m.contact_id not in tried][:HANDOVER_HEAD]
                if not due:
                    break
            outcome = _hand_to_first(run, due, handover, tried, contended=outcome == "lost")
            if outcome not in ("lost", "skipped"):
                break
        return outcome, len(tried) - 1  # the ended contact is not one tried
    finally:
        if run.next_wake is not None:
            _wake_dispatch(account_id, campaign.id, run.next_wake)
        wait(kept.get("dials", []))


def _hand_to_first(
    run: _Run,
    due: list[tuple[CampaignContact, int]],
    handover: store.Handover,
    tried: set[str],
    *,
    contended: bool,
) -> str:
    """Claim the ended call's slot for the first of `due` that passes the checks and is still
    free (each added to `tried`): `placed`; `lost` (the last claim lost its contact to another
    end or a round) or `skipped` (none passed), when the head is worth reading again; or why no
    other contact can take the slot (`full`, `gone`, `stop`).

    In the head's order, until a claim is lost (or `contended`: one was, on an earlier read):
    the ends racing for the head walk it in that same order too, each losing to the one ahead
    of it in turn, so the contacts left are then tried in an order of this end's own."""
    waiting = list(due)
    if contended:
        random.shuffle(waiting)
    outcome = "skipped"
    while waiting:
        candidate, candidate_version = waiting.pop(0)
        tried.add(candidate.contact_id)
        try:
            outcome = _try_dial(run, candidate, candidate_version, handover)
        except store.Full:
            return "full"
        except store.HandoverGone:
            return "gone"
        if outcome == "lost":
            random.shuffle(waiting)
        elif outcome != "skipped":
            return outcome
    return outcome


def _correct_outcome(
    account_id: str,
    campaign: Campaign,
    member: CampaignContact,
    version: int,
    call: CallRecord,
) -> None:
    new = outcome_of(call.outcome)
    old = member.last_outcome
    if old is None or old == new or member.state not in ("completed", "exhausted", "pending"):
        return
    after = _ended_member(campaign, member.model_copy(update={"state": "calling"}), call)
    if campaign.status in TERMINAL:
        # Too late to call again: the outcome is corrected, the contact stays as it ended.
        after = after.model_copy(update={"state": member.state, "next_attempt_at": None})
    if store.save_contact(account_id, member, after, version):
        store.add_outcomes(account_id, campaign.id, {old: -1, new: 1})
        if after.next_attempt_at is not None:
            _wake_dispatch(account_id, campaign.id, after.next_attempt_at)


def _release_stale(account_id: str, member: CampaignContact, call: CallRecord) -> None:
    store.release(
        account_id,
        call.id,
        before=member,
        after=None,
        version=0,
        outcome=outcome_of(call.outcome),
    )


# --------------------------------------------------------------------------- the tick


def tick(now: datetime | None = None) -> dict[str, int]:
    """Every minute: start scheduled campaigns that are due, look at slots whose lease ran out,
    dispatch running campaigns, complete those with nobody left."""
    now = now or utcnow()
    started = swept = placed = 0
    for account_id, campaign_id in list(store.scheduled_due(now)):
        try:
            start_scheduled(account_id, campaign_id)
            started += 1
        except Exception:  # noqa: BLE001 (one campaign's failure must not stop the tick)
            logger.exception("scheduled campaign not started", extra={"id": campaign_id})
    for account_id, campaign_id in list(store.active()):
        try:
            swept += sweep(account_id, campaign_id, now)
            campaign, _ = store.get(account_id, campaign_id)
            if campaign.status == "running":
                placed += dispatch(account_id, campaign_id)
            elif (
                campaign.status in TERMINAL
                and store.counters(account_id, campaign_id).in_flight <= 0
            ):
                store.unlist_active(account_id, campaign_id)
        except NotFound:
            continue
        except Exception:  # noqa: BLE001
            logger.exception("campaign not swept", extra={"id": campaign_id})
    return {"started": started, "swept": swept, "placed": placed}


def sweep(account_id: str, campaign_id: str, now: datetime) -> int:
    """Look at every slot whose lease ran out; how many were given back."""
    freed = 0
    for call_id, contact_id, lease_until in store.slots(account_id, campaign_id):
        if lease_until > now:
            continue
        try:
            call = call_store.get(account_id, call_id)
        except NotFound:
            continue
        if call.status == "ended":
            member, version = store.get_contact(account_id, campaign_id, contact_id)
            if member.last_call_id == call_id:
                freed += int(_apply_end(account_id, member, version, call))
            else:
                _release_stale(account_id, member, call)
                freed += 1
            continue
        if call.status == "queued" and call_store.dial_claim(account_id, call_id) is None:
            # Claimed, never handed to the dialer (a crash in between): dial it now (the dialer
            # claims the call itself, so a job that was sent after all dials once).
            queues.send(
                get_settings().dial_queue_url,
                DialJob(account_id=account_id, call_id=call_id).model_dump(),
            )
        store.extend_lease(account_id, campaign_id, call_id, now + LEASE)
    return freed
