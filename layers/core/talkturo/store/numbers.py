"""Phone numbers, the global number → account routing, and the free plan's trial slot.

Items (see docs/data-model.md, "Phone numbers"):
- Number   PK=A#<acct> SK=PN#<pn id>: the document (optimistic `version`), plus `status` and
  `assistant_id` as attributes of their own so that conditions can name them. A trial number
  that expires also carries GSI3PK=TRIALEXP#<yyyy-mm-dd> GSI3SK=<expires_at iso>#<acct>#<pn id>
  (the expiry sweep's index); lifting the expiry or releasing the number removes them.
  GSI4PK=PNID#<pn id> GSI4SK=A#<acct>: which account holds a number id, for the admin routes
  only (requests of an account always know their account).
  A number that pays rent carries GSI1PK=NUMRENT#<yyyy-mm-dd> GSI1SK=<due iso>#<acct>#<pn id>
  (the renewal sweep's index): due is its next renewal while active, the end of its grace
  while suspended for rent (domain.numbers.rent_due_at); other statuses carry none.
- Routing  PK=NUMBER#<e164> SK=NUMBER: the account and number holding that phone number. Written
  with attribute_not_exists in the purchase transaction, so a phone number is held by one
  account at a time; deleted when the number is released (or its purchase failed). Inbound
  calls find their account and assistant through it. Never read on behalf of a request.
- Trial    PK=A#<acct> SK=TRIALNUMBER: the number using the free plan's one trial slot, written
  with attribute_not_exists beside a trial number, so two concurrent purchases cannot both take
  it; deleted when that number is released or the expiry is lifted.

Every change of a number is a conditional write on its `version` (plus the status/assistant
conditions of the change), in one transaction with whatever else must move with it: the
assistant's `phone_number_ids` set (store.assistants' stage functions), the routing item, the
trial slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite

from talkturo.domain.numbers import PhoneNumberRecord, rent_due_at
from talkturo.errors import Conflict, NotFound
from talkturo.store import assistants as assistant_store
from talkturo.store import keys
from talkturo.store.paging import query_page
from talkturo.store.table import Document, Item, connection
from talkturo.store.transact import Contention, Refused, Writes

PREFIX = "PN#"
TRIAL_SK = "TRIALNUMBER"
EXPIRY_PREFIX = "TRIALEXP#"
ID_PREFIX = "PNID#"
RENT_PREFIX = "NUMRENT#"


class PhoneNumberItem(Document):
    """PK=A#<acct> SK=PN#<pn id>."""

    status = UnicodeAttribute()
    assistant_id = UnicodeAttribute(null=True)


class NumberRouteItem(Item):
    """PK=NUMBER#<e164> SK=NUMBER."""

    account_id = UnicodeAttribute()
    number_id = UnicodeAttribute()


class TrialSlotItem(Item):
    """PK=A#<acct> SK=TRIALNUMBER."""

    number_id = UnicodeAttribute()


class Stale(Exception):
    """The number changed between read and write (another request won); read again."""


def route_pk(phone_number: str) -> str:
    return f"NUMBER#{phone_number}"


def _sk(number_id: str) -> str:
    return PREFIX + number_id


def expiry_partition(day: str) -> str:
    return EXPIRY_PREFIX + day


def rent_partition(day: str) -> str:
    return RENT_PREFIX + day


def _item(account_id: str, record: PhoneNumberRecord, version: int | None) -> PhoneNumberItem:
    item = PhoneNumberItem(
        keys.account(account_id),
        _sk(record.id),
        doc=record.model_dump_json(),
        status=record.status,
        assistant_id=record.assistant_id,
        gsi4_pk=ID_PREFIX + record.id,
        gsi4_sk=keys.account(account_id),
    )
    if (
        record.trial
        and record.expires_at is not None
        and record.status in ("purchasing", "active", "suspended")
    ):
        expires = record.expires_at.isoformat()
        item.gsi3_pk = expiry_partition(record.expires_at.date().isoformat())
        item.gsi3_sk = f"{expires}#{account_id}#{record.id}"
    due = rent_due_at(record)
    if due is not None:
        item.gsi1_pk = rent_partition(due.date().isoformat())
        item.gsi1_sk = f"{due.isoformat()}#{account_id}#{record.id}"
    if version is not None:
        item.version = version
    return item


def _record_of(item: PhoneNumberItem) -> PhoneNumberRecord:
    return PhoneNumberRecord.model_validate_json(item.doc)


class _Staged:
    """Lets store.assistants' stage functions (written for a TransactWrite) add to Writes."""

    def __init__(self, writes: Writes, label: str) -> None:
        self._writes = writes
        self._label = label

    def update(self, item: Item, actions: list[Any], condition: Condition | None = None) -> None:
        self._writes.update(self._label, item, actions, condition)


def _tx(writes: Writes, label: str) -> TransactWrite:
    return cast(TransactWrite, _Staged(writes, label))


# --------------------------------------------------------------------------- reads


def get(account_id: str, number_id: str) -> tuple[PhoneNumberRecord, int]:
    """The number and its version (for conditional writes); NotFound otherwise."""
    connection()
    try:
        item = PhoneNumberItem.get(keys.account(account_id), _sk(number_id), consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such phone number", param="id") from None
    return _record_of(item), int(item.version)


def list_page(
    account_id: str,
    *,
    limit: int,
    starting_after: str | None,
    status: str | None = None,
    assistant_id: str | None = None,
) -> tuple[list[PhoneNumberRecord], str | None]:
    """Newest first. An account holds few numbers, so the filters are filter expressions."""
    condition: Condition | None = None
    if status is not None:
        condition = PhoneNumberItem.status == status
    if assistant_id is not None:
        by_assistant = PhoneNumberItem.assistant_id == assistant_id
        condition = by_assistant if condition is None else condition & by_assistant
    return query_page(
        PhoneNumberItem,
        keys.account(account_id),
        convert=_record_of,
        limit=limit,
        starting_after=starting_after,
        range_key_condition=PhoneNumberItem.sk.startswith(PREFIX),
        filter_condition=condition,
    )


def holder(phone_number: str) -> tuple[str, str] | None:
    """(account id, number id) holding this phone number; for inbound calls, never for requests."""
    connection()
    try:
        item = NumberRouteItem.get(route_pk(phone_number), "NUMBER", consistent_read=True)
    except DoesNotExist:
        return None
    return item.account_id, item.number_id


def account_of(number_id: str) -> str:
    """The account holding a number id, for operators (admin routes); NotFound otherwise."""
    connection()
    for item in PhoneNumberItem.gsi4.query(ID_PREFIX + number_id, limit=1):
        return str(item.gsi4_sk).removeprefix("A#")
    raise NotFound("no such phone number", param="id")


def all_of(account_id: str) -> Iterator[tuple[PhoneNumberRecord, int]]:
    """Every number of the account (few per account), with versions."""
    connection()
    for item in PhoneNumberItem.query(
        keys.account(account_id), PhoneNumberItem.sk.startswith(PREFIX)
    ):
        yield _record_of(item), int(item.version)


def expiring(day: str, before: datetime) -> Iterator[tuple[str, str]]:
    """(account id, number id) of trial numbers of `day` whose expiry is before `before`."""
    connection()
    for item in PhoneNumberItem.gsi3.query(
        expiry_partition(day), PhoneNumberItem.gsi3_sk < before.isoformat()
    ):
        _, account_id, number_id = str(item.gsi3_sk).rsplit("#", 2)
        yield account_id, number_id


def rent_due(day: str, before: datetime) -> Iterator[tuple[str, str]]:
    """(account id, number id) of numbers whose renewal (or grace end) on `day` is before
    `before`."""
    connection()
    for item in PhoneNumberItem.gsi1.query(
        rent_partition(day), PhoneNumberItem.gsi1_sk < before.isoformat()
    ):
        _, account_id, number_id = str(item.gsi1_sk).rsplit("#", 2)
        yield account_id, number_id


# --------------------------------------------------------------------------- writes


def create(account_id: str, record: PhoneNumberRecord) -> None:
    """The number (purchasing), its routing item and, for a trial, the trial slot, together.

    Conflict `number_not_available` when any account already holds the phone number;
    Conflict `trial_slot_taken` when the account's trial slot is taken.
    """
    writes = Writes()
    writes.put(
        "route",
        NumberRouteItem(
            route_pk(record.phone_number), "NUMBER", account_id=account_id, number_id=record.id
        ),
        NumberRouteItem.pk.does_not_exist(),
    )
    if record.trial:
        writes.put(
            "trial",
            TrialSlotItem(keys.account(account_id), TRIAL_SK, number_id=record.id),
            TrialSlotItem.pk.does_not_exist(),
        )
    writes.put("number", _item(account_id, record, None), PhoneNumberItem.pk.does_not_exist())
    try:
        writes.commit()
    except Refused as refused:
        if "route" in refused.labels:
            raise Conflict(
                f"{record.phone_number} is not available; search again and choose another",
                param="phone_number",
                code="number_not_available",
            ) from None
        if "trial" in refused.labels:
            raise Conflict("the trial slot is taken", code="trial_slot_taken") from None
        raise
    except Contention as error:
        raise Conflict("the number is being bought at the same time; try again") from error


def update(
    account_id: str,
    before: PhoneNumberRecord,
    version: int,
    after: PhoneNumberRecord,
    *,
    free_routing: bool = False,
) -> None:
    """Write `after` over `before` (read at `version`) in one transaction, moving with it the
    assistants' sets (when `assistant_id` changes), the trial slot (when the number stops being
    a live trial) and, with `free_routing`, the routing item. Stale when the number changed
    since it was read; Refused (label `assistant`) when the new assistant does not exist."""
    writes = Writes()
    writes.put(
        "number",
        _item(account_id, after, version),
        PhoneNumberItem.status == before.status,
    )
    if before.assistant_id != after.assistant_id:
        if before.assistant_id:
            assistant_store.stage_remove_phone_number(
                _tx(writes, "old_assistant"), account_id, before.assistant_id, before.id
            )
        if after.assistant_id:
            assistant_store.stage_add_phone_number(
                _tx(writes, "assistant"), account_id, after.assistant_id, after.id
            )
    trial_ends = before.trial and before.status != "released"
    trial_ends = trial_ends and (not after.trial or after.status in ("released", "error"))
    if trial_ends:
        writes.delete(
            "trial",
            TrialSlotItem(keys.account(account_id), TRIAL_SK),
            TrialSlotItem.pk.does_not_exist() | (TrialSlotItem.number_id == before.id),
            add_version_condition=False,
        )
    if free_routing:
        writes.delete(
            "route",
            NumberRouteItem(route_pk(before.phone_number), "NUMBER"),
            NumberRouteItem.pk.does_not_exist() | (NumberRouteItem.number_id == before.id),
            add_version_condition=False,
        )
    try:
        writes.commit()
    except Refused as refused:
        if "number" in refused.labels:
            raise Stale from None
        raise
    except Contention:
        raise Stale from None
