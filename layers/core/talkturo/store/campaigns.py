"""Campaign items: the campaign, its counters, its contacts, the slots its calls hold.

Items (docs/data-model.md, "Campaigns"):
- Campaign   PK=A#<acct> SK=CAMP#<id>: document (optimistic `version`), `status`.
  GSI1 `CAMPAIGNS#SCHEDULED` / `<start iso>#<acct>#<id>` while scheduled (the tick starts it);
  GSI2 `CAMPAIGNS#ACTIVE` / `<acct>#<id>` while running, paused, or ended with calls still
  holding slots (the tick sweeps those).
- Counters   PK=A#<acct> SK=CAMPRUN#<id>: number attributes moved only by ADD inside the
  transactions that move contacts: `in_flight` (the admission counter: +1 conditioned on being
  below the campaign's limit), `audience_total`, `c_<state>`, `s_<skip reason>`, `o_<outcome>`.
- Account slots  PK=A#<acct> SK=CAMPSLOTS: `in_flight` over all the account's campaigns
  (conditioned on the account's cap).
- Slot       PK=A#<acct>#CAMP#<id> SK=SLOT#<call id>: the call holding one admission, with its
  `lease_until`; deleted in the transaction that gives the admission back (exactly once).
- Contact    PK=A#<acct>#CAMP#<id> SK=CC#<contact id>: document (optimistic `version`), `state`.
  GSI1 `A#<acct>#CAMP#<id>#DUE` / `<next attempt iso>#<contact id>` while pending (dispatch reads
  only the due head of it); GSI2 `A#<acct>#CAMP#<id>#ST#<state>` / `CC#<contact id>`.
- Pace       PK=A#<acct> SK=DIALPACE: `next_ms`, the earliest moment of the account's next dial.
- Turn       PK=A#<acct> SK=CAMPTURN#<id>: the campaign's dispatch turn: `holder` and its lease
  `until` (epoch ms) while a dispatch runs, `asked` (ADD 1 by every dispatch asked for).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.expressions.condition import Condition

from talkturo.domain.calls import CallRecord
from talkturo.domain.campaigns import (
    CONTACT_STATES,
    OUTCOMES,
    SKIP_REASONS,
    Campaign,
    CampaignContact,
    CampaignCounters,
)
from talkturo.errors import Conflict, NotFound
from talkturo.store import assistants as assistant_store
from talkturo.store import calls as call_store
from talkturo.store import keys
from talkturo.store.paging import query_page
from talkturo.store.table import Document, Item, connection
from talkturo.store.transact import MAX_WRITES, Contention, Refused, Writes

PREFIX = "CAMP#"
CONTACT_PREFIX = "CC#"
SLOT_PREFIX = "SLOT#"
SCHEDULED = "CAMPAIGNS#SCHEDULED"
ACTIVE = "CAMPAIGNS#ACTIVE"


class CampaignItem(Document):
    status = UnicodeAttribute()


class CampaignKeysItem(Item):
    """The campaign item seen without its document (no version: index changes only)."""

    status = UnicodeAttribute(null=True)


class CountersItem(Item):
    """PK=A#<acct> SK=CAMPRUN#<id> (no version: only ADDs)."""

    in_flight = NumberAttribute(null=True)
    audience_total = NumberAttribute(null=True)
    c_pending = NumberAttribute(null=True)
    c_queued = NumberAttribute(null=True)
    c_calling = NumberAttribute(null=True)
    c_completed = NumberAttribute(null=True)
    c_exhausted = NumberAttribute(null=True)
    c_skipped = NumberAttribute(null=True)
    s_dnc = NumberAttribute(null=True)
    s_no_phone = NumberAttribute(null=True)
    s_outside_compliance = NumberAttribute(null=True)
    s_invalid_number = NumberAttribute(null=True)
    o_answered = NumberAttribute(null=True)
    o_voicemail = NumberAttribute(null=True)
    o_no_answer = NumberAttribute(null=True)
    o_busy = NumberAttribute(null=True)
    o_error = NumberAttribute(null=True)


class AccountSlotsItem(Item):
    in_flight = NumberAttribute(null=True)


class SlotItem(Item):
    contact_id = UnicodeAttribute()
    lease_until = UnicodeAttribute()


class ContactItem(Document):
    state = UnicodeAttribute()


class PaceItem(Item):
    next_ms = NumberAttribute(null=True)


class TurnItem(Item):
    holder = UnicodeAttribute(null=True)
    until = NumberAttribute(null=True)
    asked = NumberAttribute(null=True)


# --------------------------------------------------------------------------- keys


def _sk(campaign_id: str) -> str:
    return PREFIX + campaign_id


def _counters_key(account_id: str, campaign_id: str) -> tuple[str, str]:
    return keys.account(account_id), f"CAMPRUN#{campaign_id}"


def contacts_partition(account_id: str, campaign_id: str) -> str:
    return keys.account_scoped(account_id, "CAMP", campaign_id)


def due_partition(account_id: str, campaign_id: str) -> str:
    return keys.account_scoped(account_id, "CAMP", campaign_id, "DUE")


def state_partition(account_id: str, campaign_id: str, state: str) -> str:
    return keys.account_scoped(account_id, "CAMP", campaign_id, "ST", state)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- campaigns


def _campaign_item(account_id: str, campaign: Campaign, version: int | None) -> CampaignItem:
    item = CampaignItem(keys.account(account_id), _sk(campaign.id))
    if version is not None:
        item.version = version
    item.doc = campaign.model_dump_json()
    item.status = campaign.status
    if campaign.status == "scheduled" and campaign.scheduled_start_at:
        item.gsi1_pk = SCHEDULED
        item.gsi1_sk = f"{_iso(campaign.scheduled_start_at)}#{account_id}#{campaign.id}"
    if campaign.status in ("running", "paused", "cancelled", "completed"):
        # Ended campaigns stay until the tick finds no call holding a slot (unlisted then).
        item.gsi2_pk, item.gsi2_sk = ACTIVE, f"{account_id}#{campaign.id}"
    return item


def _campaign_of(item: CampaignItem) -> Campaign:
    return Campaign.model_validate_json(item.doc)


def create(account_id: str, campaign: Campaign) -> None:
    writes = Writes()
    writes.put(
        "campaign", _campaign_item(account_id, campaign, None), CampaignItem.pk.does_not_exist()
    )
    pk, sk = _counters_key(account_id, campaign.id)
    writes.put("counters", CountersItem(pk, sk, in_flight=0, audience_total=0))
    writes.commit()


def get(account_id: str, campaign_id: str) -> tuple[Campaign, int]:
    connection()
    try:
        item = CampaignItem.get(keys.account(account_id), _sk(campaign_id), consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such campaign", param="id") from None
    return _campaign_of(item), int(item.version)


def counters(account_id: str, campaign_id: str) -> CampaignCounters:
    connection()
    try:
        item = CountersItem.get(*_counters_key(account_id, campaign_id), consistent_read=True)
    except DoesNotExist:
        return CampaignCounters()
    return CampaignCounters(
        audience_total=int(item.audience_total or 0),
        in_flight=int(item.in_flight or 0),
        counts={s: int(getattr(item, f"c_{s}") or 0) for s in CONTACT_STATES},
        skipped={r: int(getattr(item, f"s_{r}") or 0) for r in SKIP_REASONS},
        outcomes={o: int(getattr(item, f"o_{o}") or 0) for o in OUTCOMES},
    )


def list_page(
    account_id: str, *, limit: int, starting_after: str | None, status: str | None
) -> tuple[list[Campaign], str | None]:
    return query_page(
        CampaignItem,
        keys.account(account_id),
        convert=_campaign_of,
        limit=limit,
        starting_after=starting_after,
        range_key_condition=CampaignItem.sk.between(PREFIX + "camp_", PREFIX + "camp_\uffff"),
        filter_condition=(CampaignItem.status == status) if status else None,
    )


def live_of_account(account_id: str) -> Iterator[Campaign]:
    """The account's campaigns that are not over (an account holds few campaigns)."""
    connection()
    condition = CampaignItem.status.is_in("draft", "scheduled", "running", "paused")
    for item in CampaignItem.query(
        keys.account(account_id),
        CampaignItem.sk.between(PREFIX + "camp_", PREFIX + "camp_\uffff"),
        filter_condition=condition,
    ):
        yield _campaign_of(item)


def save_writes(
    writes: Writes, account_id: str, campaign: Campaign, version: int, *, assistant_delta: int = 0
) -> None:
    """The campaign as changed, if still at `version` (label `campaign`); the assistant's
    running-campaign count moved in the same transaction when `assistant_delta`."""
    writes.put("campaign", _campaign_item(account_id, campaign, version))
    if assistant_delta:
        assistant_store.campaign_count_write(
            writes, account_id, campaign.assistant_id, assistant_delta
        )


def save(account_id: str, campaign: Campaign, version: int, *, assistant_delta: int = 0) -> None:
    """Conflict when the campaign changed since it was read (read again and decide again)."""
    writes = Writes()
    save_writes(writes, account_id, campaign, version, assistant_delta=assistant_delta)
    try:
        writes.commit()
    except Refused as refused:
        if "assistant" in refused.labels:
            raise Conflict(
                "the campaign's assistant is gone", param="assistant_id", code="assistant_gone"
            ) from None
        raise Conflict("the campaign changed at the same time; try again") from None
    except Contention:
        raise Conflict("the campaign changed at the same time; try again") from None


class CallsLive(Exception):
    """The campaign's calls still hold slots: it cannot be deleted yet."""


def delete(account_id: str, campaign_id: str, version: int) -> None:
    """The campaign and its counters, if still at `version` and no call holds a slot (else
    CallsLive: its end must give the slot back, to the account's count too). Its contacts go
    afterwards, a page at a time (`purge_contacts`)."""
    connection()
    item = CampaignItem(keys.account(account_id), _sk(campaign_id))
    item.version = version
    writes = Writes()
    writes.delete("campaign", item)
    writes.delete(
        "counters",
        CountersItem(*_counters_key(account_id, campaign_id)),
        CountersItem.in_flight.does_not_exist() | (CountersItem.in_flight <= 0),
    )
    writes.delete("turn", _turn(account_id, campaign_id))
    try:
        writes.commit()
    except Refused as refused:
        if "counters" in refused.labels:
            raise CallsLive() from None
        raise Conflict("the campaign changed at the same time; try again") from None
    except Contention:
        raise Conflict("the campaign changed at the same time; try again") from None


def purge_contacts(account_id: str, campaign_id: str, limit: int) -> bool:
    """Delete up to `limit` items of a deleted campaign's partition (its contacts, and a slot a
    lost call end left); True when more may be left. Each run reads the partition from its
    start, so running it again (a redelivered job) deletes what is left and nothing else."""
    connection()
    page = Item.query(contacts_partition(account_id, campaign_id), limit=limit, page_size=limit)
    found = list(page)
    with Item.batch_write() as batch:
        for item in found:
            batch.delete(item)
    return page.last_evaluated_key is not None


def unlist_active(account_id: str, campaign_id: str) -> None:
    """Take an ended campaign with no call left out of the tick's index."""
    connection()
    item = CampaignKeysItem(keys.account(account_id), _sk(campaign_id))
    try:
        item.update(
            actions=[CampaignKeysItem.gsi2_pk.remove(), CampaignKeysItem.gsi2_sk.remove()],
            condition=CampaignKeysItem.status.is_in("completed", "cancelled"),
        )
    except UpdateError as error:
        if getattr(error, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise


def scheduled_due(before: datetime) -> Iterator[tuple[str, str]]:
    """(account, campaign) of scheduled campaigns whose start time has come."""
    connection()
    for item in CampaignItem.gsi1.query(SCHEDULED, CampaignItem.gsi1_sk < _iso(before) + "~"):
        _, account_id, campaign_id = str(item.gsi1_sk).rsplit("#", 2)
        yield account_id, campaign_id


def active() -> Iterator[tuple[str, str]]:
    """(account, campaign) of every campaign the tick looks after."""
    connection()
    for item in CampaignItem.gsi2.query(ACTIVE):
        account_id, campaign_id = str(item.gsi2_sk).split("#", 1)
        yield account_id, campaign_id


# --------------------------------------------------------------------------- counters


def _moves(
    counts: Mapping[str, int] | None = None,
    skipped: Mapping[str, int] | None = None,
    outcomes: Mapping[str, int] | None = None,
    **others: int,
) -> list[Any]:
    actions: list[Any] = []
    for prefix, moves in (("c", counts), ("s", skipped), ("o", outcomes)):
        for name, delta in (moves or {}).items():
            if delta:
                actions.append(getattr(CountersItem, f"{prefix}_{name}").add(delta))
    for name, delta in others.items():
        if delta:
            actions.append(getattr(CountersItem, name).add(delta))
    return actions


def _count(
    writes: Writes, account_id: str, campaign_id: str, actions: list[Any], condition: Any = None
) -> None:
    if actions:
        item = CountersItem(*_counters_key(account_id, campaign_id))
        writes.update("counters", item, actions, condition)


def add_outcomes(account_id: str, campaign_id: str, moves: dict[str, int]) -> None:
    writes = Writes()
    _count(writes, account_id, campaign_id, _moves(None, None, moves))
    _commit_retrying(writes)


def _commit_retrying(writes: Writes, attempts: int = 8) -> None:
    for attempt in range(attempts):
        try:
            writes.commit()
            return
        except Contention:
            if attempt == attempts - 1:
                raise
            _backoff(attempt)


def _backoff(attempt: int) -> None:
    import random
    import time

    time.sleep(random.uniform(0, 0.02 * (2**attempt)))


# --------------------------------------------------------------------------- campaign contacts


def _contact_item(account_id: str, contact: CampaignContact, version: int | None) -> ContactItem:
    item = ContactItem(
        contacts_partition(account_id, contact.campaign_id), CONTACT_PREFIX + contact.contact_id
    )
    if version is not None:
        item.version = version
    item.doc = contact.model_dump_json()
    item.state = contact.state
    if contact.state == "pending" and contact.next_attempt_at is not None:
        item.gsi1_pk = due_partition(account_id, contact.campaign_id)
        item.gsi1_sk = f"{_iso(contact.next_attempt_at)}#{contact.contact_id}"
    item.gsi2_pk = state_partition(account_id, contact.campaign_id, contact.state)
    item.gsi2_sk = CONTACT_PREFIX + contact.contact_id
    return item


def _contact_of(item: ContactItem) -> tuple[CampaignContact, int]:
    return CampaignContact.model_validate_json(item.doc), int(item.version)


def get_contact(account_id: str, campaign_id: str, contact_id: str) -> tuple[CampaignContact, int]:
    connection()
    try:
        item = ContactItem.get(
            contacts_partition(account_id, campaign_id),
            CONTACT_PREFIX + contact_id,
            consistent_read=True,
        )
    except DoesNotExist:
        raise NotFound("the contact is not in this campaign", param="contact_id") from None
    return _contact_of(item)


def _stage_contact(
    writes: Writes,
    account_id: str,
    contact: CampaignContact,
    version: int | None,
    condition: Condition | None = None,
    label: str = "contact",
) -> None:
    item = _contact_item(account_id, contact, version)
    if version is None:
        condition = ContactItem.pk.does_not_exist()
    writes.put(label, item, condition)


def add_contacts(account_id: str, campaign_id: str, contacts: Sequence[CampaignContact]) -> int:
    """Write audience contacts not yet in the campaign, with their counts; how many were new.

    Several to a transaction; a refused one (a page written before: a redelivered job) is
    written again one contact at a time, so each contact counts once."""
    added = 0
    step = MAX_WRITES - 1
    for start in range(0, len(contacts), step):
        batch = contacts[start : start + step]
        try:
            _commit_retrying(_addition(account_id, campaign_id, batch))
            added += len(batch)
        except Refused:
            for contact in batch:
                try:
                    _commit_retrying(_addition(account_id, campaign_id, [contact]))
                    added += 1
                except Refused:
                    continue
    return added


def _addition(account_id: str, campaign_id: str, batch: Sequence[CampaignContact]) -> Writes:
    writes = Writes()
    counts: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for contact in batch:
        item = _contact_item(account_id, contact, None)
        writes.put(f"contact:{contact.contact_id}", item, ContactItem.pk.does_not_exist())
        counts[contact.state] = counts.get(contact.state, 0) + 1
        if contact.skip_reason:
            skipped[contact.skip_reason] = skipped.get(contact.skip_reason, 0) + 1
    actions = _moves(counts, skipped, audience_total=len(batch))
    _count(writes, account_id, campaign_id, actions)
    return writes


def due(
    account_id: str, campaign_id: str, now: datetime, limit: int
) -> list[tuple[CampaignContact, int]]:
    """The pending contacts whose next attempt has come, soonest first (at most `limit`), with
    the version the index holds: a claim conditioned on it fails if the contact moved since
    (the index lags the table), so no second read is needed."""
    connection()
    return [
        _contact_of(item)
        for item in ContactItem.gsi1.query(
            due_partition(account_id, campaign_id),
            ContactItem.gsi1_sk < _iso(now) + "~",
            limit=limit,
            page_size=limit,
        )
    ]


def queue_head(account_id: str, campaign_id: str, limit: int) -> list[CampaignContact]:
    """The next pending contacts, due or not, soonest first."""
    connection()
    return [
        _contact_of(item)[0]
        for item in ContactItem.gsi1.query(
            due_partition(account_id, campaign_id), limit=limit, page_size=limit
        )
    ]


def list_contacts(
    account_id: str,
    campaign_id: str,
    *,
    state: str | None,
    limit: int,
    starting_after: str | None,
) -> tuple[list[CampaignContact], str | None]:
    if state:
        return query_page(
            ContactItem,
            state_partition(account_id, campaign_id, state),
            convert=lambda item: _contact_of(item)[0],
            limit=limit,
            starting_after=starting_after,
            index="GSI2",
            newest_first=False,
        )
    return query_page(
        ContactItem,
        contacts_partition(account_id, campaign_id),
        convert=lambda item: _contact_of(item)[0],
        limit=limit,
        starting_after=starting_after,
        range_key_condition=ContactItem.sk.startswith(CONTACT_PREFIX),
        newest_first=False,
    )


def save_contact(
    account_id: str,
    before: CampaignContact,
    after: CampaignContact,
    version: int,
    *,
    skipped: str | None = None,
) -> bool:
    """Move a contact (not holding a slot) to `after`, counting the state change; False when it
    changed since it was read."""
    writes = Writes()
    _stage_contact(writes, account_id, after, version, ContactItem.state == before.state)
    counts: dict[str, int] = {}
    if before.state != after.state:
        counts = {before.state: -1, after.state: 1}
    actions = _moves(counts, {skipped: 1} if skipped else None)
    _count(writes, account_id, after.campaign_id, actions)
    try:
        _commit_retrying(writes)
    except Refused:
        return False
    return True


# --------------------------------------------------------------------------- slots


def _account_slots(account_id: str) -> AccountSlotsItem:
    return AccountSlotsItem(keys.account(account_id), "CAMPSLOTS")


def _slot(account_id: str, campaign_id: str, call_id: str) -> SlotItem:
    return SlotItem(contacts_partition(account_id, campaign_id), SLOT_PREFIX + call_id)


class Full(Exception):
    """No admission left: `which` is `campaign` or `account`."""

    def __init__(self, which: str) -> None:
        super().__init__(f"no free slot ({which})")
        self.which = which


class HandoverGone(Exception):
    """A handover's claim was refused because the ended call's slot was given back already or
    its contact moved: no other contact can take that slot."""


@dataclass(frozen=True)
class Handover:
    """A call just over whose slot a claim takes instead of giving it back: its contact moves
    from `before` (at `version`) to `after`, its outcome is counted, its slot item goes."""

    call_id: str
    before: CampaignContact
    after: CampaignContact
    version: int
    outcome: str | None


def claim(
    account_id: str,
    *,
    before: CampaignContact,
    after: CampaignContact,
    version: int,
    call: CallRecord,
    limit: int,
    account_cap: int,
    lease_until: datetime,
    handover: Handover | None = None,
) -> bool:
    """Take one admission (campaign and account), move the contact to `queued` and record its
    call, all or nothing. False: the contact moved meanwhile; Full: no admission left;
    HandoverGone (with a `handover`): the ended call's contact moved, or its slot was given back
    already.

    With a `handover` the admission is the ended call's: its slot is deleted and the new one
    written in the same transaction, so the counters' `in_flight` stay as they are, and the
    limits are the claim's own read one slot later (at most `limit` with the ended call still
    counted is below `limit` once it is not)."""
    campaign_id = after.campaign_id
    writes = Writes()
    _stage_contact(writes, account_id, after, version, ContactItem.state == "pending")
    counts: dict[str, int] = {before.state: -1, after.state: 1}
    counters_key = _counters_key(account_id, campaign_id)
    if handover is None:
        below = CountersItem.in_flight.does_not_exist() | (CountersItem.in_flight < limit)
        actions = _moves(counts, in_flight=1)
        writes.update("counters", CountersItem(*counters_key), actions, below)
        writes.update(
            "account",
            _account_slots(account_id),
            [AccountSlotsItem.in_flight.add(1)],
            AccountSlotsItem.in_flight.does_not_exist()
            | (AccountSlotsItem.in_flight < account_cap),
        )
    else:
        ended = handover.before
        writes.delete(
            "ended_slot", _slot(account_id, campaign_id, handover.call_id), SlotItem.pk.exists()
        )
        _stage_contact(
            writes,
            account_id,
            handover.after,
            handover.version,
            ContactItem.state == ended.state,
            label="ended_contact",
        )
        for state, delta in ((ended.state, -1), (handover.after.state, 1)):
            counts[state] = counts.get(state, 0) + delta
        outcomes = {handover.outcome: 1} if handover.outcome else None
        actions = _moves(counts, None, outcomes)
        writes.update(
            "counters", CountersItem(*counters_key), actions, CountersItem.in_flight <= limit
        )
        account_pk, account_sk = keys.account(account_id), "CAMPSLOTS"
        writes.check(
            "account",
            AccountSlotsItem,
            account_pk,
            account_sk,
            AccountSlotsItem.in_flight <= account_cap,
        )
    slot = _slot(account_id, campaign_id, call.id)
    slot.contact_id = after.contact_id
    slot.lease_until = _iso(lease_until)
    writes.put("slot", slot, SlotItem.pk.does_not_exist())
    writes.extend(call_store.creation_writes(account_id, call))
    try:
        _commit_retrying(writes)
    except Refused as refused:
        if "counters" in refused.labels:
            raise Full("campaign") from None
        if "account" in refused.labels:
            raise Full("account") from None
        if refused.labels & {"ended_slot", "ended_contact"}:
            raise HandoverGone from None
        return False
    return True


def release(
    account_id: str,
    call_id: str,
    *,
    before: CampaignContact,
    after: CampaignContact | None,
    version: int,
    outcome: str | None,
) -> bool:
    """Give the call's admission back and move its contact (None: the contact stays as it is),
    counting the outcome, exactly once: False when the slot was already given back."""
    campaign_id = before.campaign_id
    writes = Writes()
    writes.delete("slot", _slot(account_id, campaign_id, call_id), SlotItem.pk.exists())
    counts: dict[str, int] = {}
    if after is not None:
        _stage_contact(writes, account_id, after, version, ContactItem.state == before.state)
        if after.state != before.state:
            counts = {before.state: -1, after.state: 1}
    actions = _moves(counts, None, {outcome: 1} if outcome else None, in_flight=-1)
    _count(writes, account_id, campaign_id, actions)
    writes.update("account", _account_slots(account_id), [AccountSlotsItem.in_flight.add(-1)], None)
    try:
        _commit_retrying(writes)
    except Refused as refused:
        if "slot" in refused.labels:
            return False
        raise Conflict("the campaign contact changed at the same time") from None
    return True


def slots(account_id: str, campaign_id: str) -> list[tuple[str, str, datetime]]:
    """(call id, contact id, lease until) of every call holding one of the campaign's slots."""
    connection()
    return [
        (
            str(item.sk).removeprefix(SLOT_PREFIX),
            str(item.contact_id),
            datetime.fromisoformat(str(item.lease_until)),
        )
        for item in SlotItem.query(
            contacts_partition(account_id, campaign_id), SlotItem.sk.startswith(SLOT_PREFIX)
        )
    ]


def extend_lease(account_id: str, campaign_id: str, call_id: str, until: datetime) -> None:
    connection()
    try:
        _slot(account_id, campaign_id, call_id).update(
            actions=[SlotItem.lease_until.set(_iso(until))], condition=SlotItem.pk.exists()
        )
    except UpdateError as error:
        if getattr(error, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise


# --------------------------------------------------------------------------- pacing


def reserve_dial_time(account_id: str, now_ms: int, interval_ms: int) -> int:
    """The moment (epoch ms) this dial may go out: the account's next free one, at least
    `interval_ms` after the one before (calls per second to the carrier)."""
    connection()
    # Most dials find the account's pace free: one conditional write claims now.
    free = PaceItem(keys.account(account_id), "DIALPACE", next_ms=now_ms + interval_ms)
    try:
        free.save(condition=PaceItem.next_ms.does_not_exist() | (PaceItem.next_ms <= now_ms))
        return now_ms
    except PutError as error:
        if getattr(error, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise
    # Taken until later: the moment after the last one reserved, by one ADD. Dials racing for
    # the pace (a round claims side by side) each get their own moment, with no read to retry.
    taken = PaceItem(keys.account(account_id), "DIALPACE")
    taken.update(actions=[PaceItem.next_ms.add(interval_ms)])
    return int(taken.next_ms or 0) - interval_ms


# --------------------------------------------------------------------------- dispatch turn


def _turn(account_id: str, campaign_id: str) -> TurnItem:
    return TurnItem(keys.account(account_id), f"CAMPTURN#{campaign_id}")


def _refused_condition(error: UpdateError) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def take_turn(
    account_id: str, campaign_id: str, token: str, now_ms: int, lease_ms: int
) -> int | None:
    """Take the campaign's dispatch turn for `token`: the `asked` count it was taken at; None
    when another dispatch holds it, which is then asked to run once more (it sees `asked`
    move) unless it gave the turn back meanwhile (then it is taken again here)."""
    connection()
    turn = _turn(account_id, campaign_id)
    free = TurnItem.holder.does_not_exist() | (TurnItem.until < now_ms)
    for _ in range(10):
        try:
            data = turn.update(
                actions=[
                    TurnItem.holder.set(token),
                    TurnItem.until.set(now_ms + lease_ms),
                    TurnItem.asked.add(1),
                ],
                condition=free,
            )
            return int(data["Attributes"]["asked"]["N"])
        except UpdateError as error:
            if not _refused_condition(error):
                raise
        data = turn.update(actions=[TurnItem.asked.add(1)])
        if "holder" in data["Attributes"]:
            return None
    return None


def end_turn(
    account_id: str, campaign_id: str, token: str, seen: int, now_ms: int, lease_ms: int
) -> int | None:
    """Give the turn back unless a dispatch was asked for since `seen`: None once given back
    (or lost: its lease ran out and another dispatch holds it); else the `asked` count now,
    the turn kept with its lease renewed (run once more)."""
    connection()
    turn = _turn(account_id, campaign_id)
    try:
        turn.update(
            actions=[TurnItem.holder.remove(), TurnItem.until.remove()],
            condition=(TurnItem.holder == token) & (TurnItem.asked == seen),
        )
        return None
    except UpdateError as error:
        if not _refused_condition(error):
            raise
    try:
        data = turn.update(
            actions=[TurnItem.until.set(now_ms + lease_ms)], condition=TurnItem.holder == token
        )
    except UpdateError as error:
        if not _refused_condition(error):
            raise
        return None
    return int(data["Attributes"]["asked"]["N"])


def drop_turn(account_id: str, campaign_id: str, token: str) -> None:
    """Give the turn back whoever asked since (the dispatch failed, or ran its rounds)."""
    connection()
    try:
        _turn(account_id, campaign_id).update(
            actions=[TurnItem.holder.remove(), TurnItem.until.remove()],
            condition=TurnItem.holder == token,
        )
    except UpdateError as error:
        if not _refused_condition(error):
            raise
