"""Call records, the CallSid → call routing, and the index of open calls.

Items (see docs/data-model.md, "Calls"):
- Call     PK=A#<acct> SK=CALL#<call id>: the document (optimistic `version`) plus attributes of
  its own: `status_rank` (every write is conditioned on it moving forward, or staying), the
  filter attributes `direction`, `outcome`, and `dial_claim` (the dialer's one-time claim).
  GSI1PK=A#<acct>#ASST#<id>, GSI2PK=A#<acct>#PN#<id>, GSI3PK=A#<acct>#CT#<id> (when a contact),
  GSI4PK=A#<acct>#CAMP#<id> (when a campaign); every GSInSK is the call's SK, so each index
  lists newest first and a time range is a range of the ULID ids. A test call also has
  `test_run_id`: every listing filters on its absence unless test calls are asked for.
- CallSid  PK=CALLSID#<carrier sid> SK=CALLSID: account and call id; status callbacks of inbound
  calls carry only the CallSid. Written with attribute_not_exists. Never read for a request.
- Open     PK=OPENCALLS#<deadline hour> SK=<deadline iso>#<acct>#<call id>: written with the
  call, deleted in the transaction that ends it. The timeout closer reads the hours up to now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.condition import Condition

from talkturo.domain.calls import STATUS_RANK, CallRecord
from talkturo.errors import Conflict, NotFound
from talkturo.store import keys
from talkturo.store.paging import query_page
from talkturo.store.table import Document, Item, connection
from talkturo.store.transact import Contention, Refused, Writes

PREFIX = "CALL#"
OPEN_PREFIX = "OPENCALLS#"
ATTEMPTS = 6


class CallItem(Document):
    """PK=A#<acct> SK=CALL#<call id>."""

    status_rank = NumberAttribute()
    direction = UnicodeAttribute()
    outcome = UnicodeAttribute(null=True)
    assistant_id = UnicodeAttribute()
    phone_number_id = UnicodeAttribute()
    contact_id = UnicodeAttribute(null=True)
    campaign_id = UnicodeAttribute(null=True)
    dial_claim = UnicodeAttribute(null=True)
    post_call_claim = UnicodeAttribute(null=True)
    test_run_id = UnicodeAttribute(null=True)  # test calls only: listings leave them out


class CallSidItem(Item):
    """PK=CALLSID#<sid> SK=CALLSID."""

    account_id = UnicodeAttribute()
    call_id = UnicodeAttribute()


class OpenCallItem(Item):
    """PK=OPENCALLS#<yyyy-mm-ddThh> SK=<deadline iso>#<acct>#<call id>."""


def sk(call_id: str) -> str:
    return PREFIX + call_id


def sid_pk(carrier_sid: str) -> str:
    return f"CALLSID#{carrier_sid}"


def open_partition(moment: datetime) -> str:
    return OPEN_PREFIX + moment.strftime("%Y-%m-%dT%H")


def _open_item(account_id: str, record: CallRecord) -> OpenCallItem:
    deadline = record.deadline
    return OpenCallItem(
        open_partition(deadline), f"{deadline.isoformat()}#{account_id}#{record.id}"
    )


def _fill(item: CallItem, account_id: str, record: CallRecord) -> None:
    item.doc = record.model_dump_json()
    item.status_rank = STATUS_RANK[record.status]
    item.direction = record.direction
    item.outcome = record.outcome
    item.assistant_id = record.assistant_id
    item.phone_number_id = record.phone_number_id
    item.contact_id = record.contact_id
    item.campaign_id = record.campaign_id
    item.test_run_id = record.test_run_id
    own = sk(record.id)
    item.gsi1_pk, item.gsi1_sk = keys.account_scoped(account_id, "ASST", record.assistant_id), own
    item.gsi2_pk, item.gsi2_sk = keys.account_scoped(account_id, "PN", record.phone_number_id), own
    if record.contact_id:
        item.gsi3_pk = keys.account_scoped(account_id, "CT", record.contact_id)
        item.gsi3_sk = own
    if record.campaign_id:
        item.gsi4_pk = keys.account_scoped(account_id, "CAMP", record.campaign_id)
        item.gsi4_sk = own


def _record_of(item: CallItem) -> CallRecord:
    return CallRecord.model_validate_json(item.doc)


# --------------------------------------------------------------------------- reads


def _get_item(account_id: str, call_id: str) -> CallItem:
    connection()
    try:
        return CallItem.get(keys.account(account_id), sk(call_id), consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such call", param="id") from None


def get(account_id: str, call_id: str) -> CallRecord:
    return _record_of(_get_item(account_id, call_id))


def dial_claim(account_id: str, call_id: str) -> str | None:
    return _get_item(account_id, call_id).dial_claim


def by_carrier_sid(carrier_sid: str) -> tuple[str, str] | None:
    """(account id, call id) of the call the carrier knows by this sid; for webhooks only."""
    connection()
    try:
        item = CallSidItem.get(sid_pk(carrier_sid), "CALLSID", consistent_read=True)
    except DoesNotExist:
        return None
    return item.account_id, item.call_id


# Which index serves a filter, in order of preference (the others become filter conditions).
_INDEXED = (
    ("contact_id", "GSI3", "CT"),
    ("campaign_id", "GSI4", "CAMP"),
    ("phone_number_id", "GSI2", "PN"),
    ("assistant_id", "GSI1", "ASST"),
)


def list_page(
    account_id: str,
    *,
    limit: int,
    starting_after: str | None,
    filters: dict[str, str],
    sk_after: str | None = None,
    sk_before: str | None = None,
    include_tests: bool = False,
) -> tuple[list[CallRecord], str | None]:
    """Newest first. `filters` may hold assistant_id, phone_number_id, contact_id, campaign_id,
    direction, outcome, test_run_id; the most selective id filter picks the index, the rest
    filter. Test calls are left out unless `include_tests` (or a test_run_id is given)."""
    index: str | None = None
    partition = keys.account(account_id)
    key_attr = CallItem.sk
    rest = dict(filters)
    for name, index_name, tag in _INDEXED:
        if rest.get(name):
            index = index_name
            partition = keys.account_scoped(account_id, tag, rest.pop(name))
            key_attr = getattr(CallItem, f"{index_name.lower()}_sk")
            break
    lower = sk(sk_after) if sk_after else PREFIX
    upper = sk(sk_before) if sk_before else PREFIX + "\uffff"
    range_condition = key_attr.between(lower, upper)
    condition: Condition | None = None
    if not include_tests and not rest.get("test_run_id"):
        condition = CallItem.test_run_id.does_not_exist()
    for name, value in rest.items():
        if value is None:
            continue
        term = getattr(CallItem, name) == value
        condition = term if condition is None else condition & term
    return query_page(
        CallItem,
        partition,
        convert=_record_of,
        limit=limit,
        starting_after=starting_after,
        range_key_condition=range_condition,
        filter_condition=condition,
        index=index,
    )


def open_calls(hour: datetime, before: datetime) -> Iterator[tuple[str, str]]:
    """(account id, call id) of open calls whose deadline falls in `hour` and before `before`."""
    connection()
    for item in OpenCallItem.query(open_partition(hour), OpenCallItem.sk < before.isoformat()):
        _, account_id, call_id = str(item.sk).rsplit("#", 2)
        yield account_id, call_id


# --------------------------------------------------------------------------- writes


def creation_writes(account_id: str, record: CallRecord) -> Writes:
    """The call (must not exist: label `call`) and its open marker, for a transaction that
    records the call together with something else (a campaign's claim of its contact)."""
    item = CallItem(keys.account(account_id), sk(record.id))
    _fill(item, account_id, record)
    writes = Writes()
    writes.put("call", item, CallItem.pk.does_not_exist())
    writes.put("open", _open_item(account_id, record))
    return writes


def create(account_id: str, record: CallRecord) -> None:
    """The call, its open marker and (when the carrier already knows it) its CallSid item.

    Conflict `call_exists` when the CallSid is already recorded (a retried voice webhook)."""
    writes = creation_writes(account_id, record)
    if record.carrier_sid:
        writes.put(
            "sid",
            CallSidItem(
                sid_pk(record.carrier_sid), "CALLSID", account_id=account_id, call_id=record.id
            ),
            CallSidItem.pk.does_not_exist(),
        )
    try:
        writes.commit()
    except Refused as refused:
        if "sid" in refused.labels:
            raise Conflict("the carrier's call is already recorded", code="call_exists") from None
        raise
    except Contention as error:
        raise Conflict("the call is being recorded at the same time", code="call_exists") from error


def change(
    account_id: str, call_id: str, fn: Callable[[CallRecord], CallRecord | None]
) -> CallRecord:
    """Read, apply `fn` (None: nothing to change), write conditioned on the version and on the
    status rank moving forward (or staying); again when another write landed in between.

    Moving to `ended` deletes the open marker in the same transaction; a new carrier sid is
    recorded with its CallSid item."""
    for _ in range(ATTEMPTS):
        item = _get_item(account_id, call_id)
        before = _record_of(item)
        after = fn(before)
        if after is None:
            return before
        old_rank, new_rank = STATUS_RANK[before.status], STATUS_RANK[after.status]
        if new_rank < old_rank:
            return before
        _fill(item, account_id, after)
        writes = Writes()
        rank_condition = (
            CallItem.status_rank < new_rank
            if new_rank > old_rank
            else CallItem.status_rank == old_rank
        )
        writes.put("call", item, rank_condition)
        if after.status == "ended" and before.status != "ended":
            writes.delete("open", _open_item(account_id, before), add_version_condition=False)
        if after.carrier_sid and after.carrier_sid != before.carrier_sid:
            writes.put(
                "sid",
                CallSidItem(
                    sid_pk(after.carrier_sid), "CALLSID", account_id=account_id, call_id=call_id
                ),
            )
        try:
            writes.commit()
        except (Refused, Contention):
            continue
        return after
    raise Conflict("the call changed at the same time; try again")


def claim_dial(account_id: str, call_id: str, claim: str) -> bool:
    """Record, once, that this call is being dialed; False when it already was."""
    item = _get_item(account_id, call_id)
    if item.dial_claim is not None:
        return False
    try:
        item.update(
            actions=[CallItem.dial_claim.set(claim)], condition=CallItem.dial_claim.does_not_exist()
        )
    except UpdateError as error:
        if getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def release_dial(account_id: str, call_id: str, claim: str) -> None:
    """Give the claim back (the carrier failed in a way worth retrying)."""
    item = _get_item(account_id, call_id)
    if item.dial_claim != claim:
        return
    try:
        item.update(actions=[CallItem.dial_claim.remove()], condition=CallItem.dial_claim == claim)
    except UpdateError as error:
        if getattr(error, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise


def claim_post_call(account_id: str, call_id: str, claim: str) -> bool:
    """Record, once, that the call's post-call job is queued; False when it already was."""
    item = _get_item(account_id, call_id)
    if item.post_call_claim is not None:
        return False
    try:
        item.update(
            actions=[CallItem.post_call_claim.set(claim)],
            condition=CallItem.post_call_claim.does_not_exist(),
        )
    except UpdateError as error:
        if getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def release_post_call(account_id: str, call_id: str, claim: str) -> None:
    item = _get_item(account_id, call_id)
    if item.post_call_claim != claim:
        return
    try:
        item.update(
            actions=[CallItem.post_call_claim.remove()],
            condition=CallItem.post_call_claim == claim,
        )
    except UpdateError as error:
        if getattr(error, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise
