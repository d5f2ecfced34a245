"""Contacts, and the items that find them: phone guard, tags, search tokens, company counts.

Items (see docs/data-model.md):
- Contact     PK=A#<acct> SK=CT#<ct id>: the document (with the status held before DNC), and
              GSI1PK=A#<acct>#CO#<co id> GSI1SK=CT#<ct id>      (contacts of a company)
              GSI2PK=A#<acct>#LEAD#<status> GSI2SK=CT#<ct id>   (by lead status; dnc = DNC)
              `tags` (string set) and `search` (its search tokens, newline-joined) so that
              filters beyond the one an index answers run as DynamoDB filter expressions.
- Phone guard PK=A#<acct> SK=CTPHONE#<e164> -> contact id: a primary number once per account.
- Tag         PK=A#<acct>#TAG#<tag> SK=CT#<ct id>: the contacts carrying a tag, newest first.
- Token       PK=A#<acct>#SEARCH SK=<token>#<ct id>: prefix search (`begins_with`) over the
              full name (which holds every prefix of the first name) and last name, or the
              only name, email and phone digits, case-folded.
- Activity    PK=A#<acct>#CT#<ct id> SK=ACT#<call id>#<type>: what happened to the contact on a
              call (an opt-out), written as the receipt of the contact's own update, so once per
              call; call ids are ULIDs, so the partition reads in call order.

Every write of a contact is one transaction over all of these plus an ADD on the contact_count
of the company it leaves and the one it joins, conditioned on the contact's version; a lost
race is retried from a fresh read.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from pydantic_core import PydanticSerializationError
from pynamodb.attributes import UnicodeAttribute, UnicodeSetAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from talkturo.domain.contacts import (
    Contact,
    ContactActivity,
    ContactFilters,
    retired_search_tokens,
    search_tokens,
)
from talkturo.errors import Conflict, InvalidRequest, NotFound
from talkturo.store import companies, keys
from talkturo.store.paging import decode_cursor, encode_cursor, query_page
from talkturo.store.table import Document, Item, connection
from talkturo.store.transact import MAX_WRITES, Contention, Refused, Writes

PREFIX = "CT#"
PHONE_PREFIX = "CTPHONE#"
ACTIVITY_PREFIX = "ACT#"
_SEPARATOR = "\n"
# A filtered walk over tag or search items reads at most this many before it answers with what
# it has (and a cursor), so one request never reads a whole partition.
MAX_EXAMINED = 1000
_BATCH = 100

P = TypeVar("P", bound=Item)


class ContactItem(Document):
    """PK=A#<acct> SK=CT#<ct id>."""

    tags = UnicodeSetAttribute(null=True)
    search = UnicodeAttribute(null=True)


class PhoneGuardItem(Item):
    """PK=A#<acct> SK=CTPHONE#<e164>."""

    contact_id = UnicodeAttribute()


class ContactTagItem(Item):
    """PK=A#<acct>#TAG#<tag> SK=CT#<ct id>."""


class SearchTokenItem(Item):
    """PK=A#<acct>#SEARCH SK=<token>#<ct id>."""

    contact_id = UnicodeAttribute()


class ActivityItem(Item):
    """PK=A#<acct>#CT#<ct id> SK=ACT#<call id>#<type>."""

    doc = UnicodeAttribute()


# The condition that an item does not exist yet, built once: a put's request serializes a
# condition once per condition object (store/transact.py), and every row writes these.
_ABSENT = Item.pk.does_not_exist()


class ReceiptExists(Exception):
    """The receipt given with a write exists already: the write was done before."""


class _Stale(Exception):
    """The contact, its phone guard or its old company changed between read and write."""


def _sk(contact_id: str) -> str:
    return f"{PREFIX}{contact_id}"


def company_partition(account_id: str, company_id: str) -> str:
    return keys.account_scoped(account_id, "CO", company_id)


def status_partition(account_id: str, status: str) -> str:
    return keys.account_scoped(account_id, "LEAD", status)


def tag_partition(account_id: str, tag: str) -> str:
    return keys.account_scoped(account_id, "TAG", tag)


def search_partition(account_id: str) -> str:
    return keys.account_scoped(account_id, "SEARCH")


def _token_sk(token: str, contact_id: str) -> str:
    return f"{token}#{contact_id}"


def _doc(contact: Contact) -> str:
    if not contact.custom:
        # pydantic's own JSON is the same text when it is all printable ASCII (json.dumps
        # escapes the rest, DEL too) and there are no custom values (numbers json.dumps may
        # write otherwise).
        try:
            text = contact.model_dump_json(exclude={"company_name"})
        except PydanticSerializationError:
            text = ""  # a lone surrogate, say: json.dumps writes it escaped
        if text.isascii() and "\x7f" not in text and text.endswith("}"):
            held = json.dumps(contact.status_before_dnc)
            return f'{text[:-1]},"status_before_dnc":{held}}}'
    return _doc_the_long_way(contact)


def _doc_the_long_way(contact: Contact) -> str:
    data = contact.model_dump(mode="json", exclude={"company_name"})
    data["status_before_dnc"] = contact.status_before_dnc
    return json.dumps(data, separators=(",", ":"))


def _of(item: ContactItem) -> Contact:
    return Contact.model_validate_json(item.doc)


def _fill(item: ContactItem, account_id: str, contact: Contact, tokens: set[str]) -> None:
    item.doc = _doc(contact)
    if contact.company_id:
        item.gsi1_pk = company_partition(account_id, contact.company_id)
        item.gsi1_sk = _sk(contact.id)
    else:
        item.gsi1_pk = item.gsi1_sk = None
    item.gsi2_pk = status_partition(account_id, contact.lead_status)
    item.gsi2_sk = _sk(contact.id)
    item.tags = set(contact.tags) or None
    ordered = sorted(tokens)
    item.search = _SEPARATOR + _SEPARATOR.join(ordered) if ordered else None


def _stage(
    writes: Writes,
    account_id: str,
    before: Contact | None,
    after: Contact | None,
    item: ContactItem | None,
    counts: Counter[str] | None = None,
) -> None:
    """Every write that takes the contact's items from `before` to `after` (None: absent).
    With `counts`, the company count changes are added there rather than written."""
    pk = keys.account(account_id)
    either = after or before
    assert either is not None
    contact_id = either.id
    new_tokens = search_tokens(after) if after else set()
    if after is None:
        assert item is not None
        writes.delete("contact", item)
    elif item is None:
        item = ContactItem(pk, _sk(contact_id))
        _fill(item, account_id, after, new_tokens)
        writes.put("contact", item, _ABSENT)
    else:
        _fill(item, account_id, after, new_tokens)
        writes.put("contact", item)

    old_phone = before.phone if before else None
    new_phone = after.phone if after else None
    if old_phone != new_phone:
        if old_phone:
            writes.delete(
                "old_phone",
                PhoneGuardItem(pk, f"{PHONE_PREFIX}{old_phone}"),
                PhoneGuardItem.contact_id == contact_id,
            )
        if new_phone:
            writes.put(
                "phone",
                PhoneGuardItem(pk, f"{PHONE_PREFIX}{new_phone}", contact_id=contact_id),
                _ABSENT,
            )

    old_company = before.company_id if before else None
    new_company = after.company_id if after else None
    if old_company != new_company and counts is not None:
        counts.update({old_company: -1} if old_company else {})
        counts.update({new_company: 1} if new_company else {})
    elif old_company != new_company:
        if old_company:
            companies.stage_count(writes, "old_company", account_id, old_company, -1)
        if new_company:
            companies.stage_count(writes, "company", account_id, new_company, 1)

    old_tags = set(before.tags) if before else set()
    new_tags = set(after.tags) if after else set()
    for tag in sorted(old_tags - new_tags):
        writes.delete("tag", ContactTagItem(tag_partition(account_id, tag), _sk(contact_id)))
    for tag in sorted(new_tags - old_tags):
        writes.put("tag", ContactTagItem(tag_partition(account_id, tag), _sk(contact_id)))

    old_tokens = search_tokens(before) if before else set()
    partition = search_partition(account_id)
    # A retired token's item (an earlier version's) may be there: deleted once it is stale (no
    # longer the contact's first name), kept while it stands (search lists a contact once).
    stale = (old_tokens | (retired_search_tokens(before) if before else set())) - (
        new_tokens | (retired_search_tokens(after) if after else set())
    )
    for token in sorted(stale):
        writes.delete("token", SearchTokenItem(partition, _token_sk(token, contact_id)))
    for token in sorted(new_tokens - old_tokens):
        writes.put(
            "token",
            SearchTokenItem(partition, _token_sk(token, contact_id), contact_id=contact_id),
        )


def _commit(writes: Writes, account_id: str, after: Contact | None, receipt: Item | None) -> None:
    if receipt is not None:
        writes.put("receipt", receipt, _ABSENT)
    try:
        writes.commit()
    except Refused as refused:
        if "receipt" in refused.labels:
            raise ReceiptExists from None
        if "phone" in refused.labels and after is not None and after.phone:
            raise _phone_taken(account_id, after.phone) from None
        if "company" in refused.labels:
            raise InvalidRequest("no such company", param="company_id") from None
        raise _Stale from refused


def _phone_taken(account_id: str, phone: str) -> Conflict:
    holder = find_by_phone(account_id, phone)
    return Conflict(f"contact {holder} already has the phone number {phone}", param="phone")


def create(account_id: str, contact: Contact, *, receipt: Item | None = None) -> None:
    """Write a new contact with all its items; Conflict when its phone is taken."""
    writes = Writes()
    _stage(writes, account_id, None, contact, None)
    try:
        _commit(writes, account_id, contact, receipt)
    except (_Stale, Contention) as error:
        raise Conflict("the contact changed at the same time; try again") from error


class NotTogether(Exception):
    """DynamoDB cancelled a transaction of several new contacts: none of them was written.
    `count` of them were in it (write those one by one to learn which and why)."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} new contacts could not be written together")
        self.count = count


# A write of `write_together`: the contact after it, its receipt, and for an update the
# contact's item as read and the contact it held (None for a new contact).
Together = tuple[Contact, Item, "ContactItem | None", "Contact | None"]


def write_together(account_id: str, entries: Sequence[Together]) -> int:
    """Write new and changed contacts, each with its receipt, in one transaction (their
    companies' count updates merged, as a transaction may touch an item once; a changed one
    under its version, as read): as many of the first of `entries` as fit, at least one; how
    many. NotTogether when the transaction is cancelled.

    The caller makes sure no two of them share a phone number or a contact.
    """
    writes = Writes()
    counts: Counter[str] = Counter()
    taken = 0
    for contact, receipt, item, before in entries:
        one = Writes()
        more = Counter(counts)
        _stage(one, account_id, before, contact, item, more)
        one.put("receipt", receipt, _ABSENT)
        if taken and len(writes) + len(one) + len(+more) > MAX_WRITES:
            break
        writes.extend(one)
        counts, taken = more, taken + 1
    for company_id, delta in sorted(counts.items()):
        if delta:
            companies.stage_count(writes, "company", account_id, company_id, delta)
    try:
        writes.commit()
    except (Refused, Contention) as error:
        raise NotTogether(taken) from error
    return taken


def _item(account_id: str, contact_id: str) -> ContactItem:
    connection()
    try:
        return ContactItem.get(keys.account(account_id), _sk(contact_id), consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such contact", param="id") from None


def get(account_id: str, contact_id: str) -> Contact:
    return _of(_item(account_id, contact_id))


def items_of(account_id: str, contact_ids: Iterable[str]) -> dict[str, ContactItem]:
    """The items of these contacts (those that exist), by id, in batch reads."""
    wanted = sorted(set(contact_ids))
    if not wanted:
        return {}
    connection()
    pk = keys.account(account_id)
    found = ContactItem.batch_get([(pk, _sk(cid)) for cid in wanted], consistent_read=True)
    return {str(item.sk).removeprefix(PREFIX): item for item in found}


def of_item(item: ContactItem) -> Contact:
    """The contact an item holds."""
    return _of(item)


def get_many(account_id: str, contact_ids: Iterable[str]) -> dict[str, Contact]:
    wanted = sorted(set(contact_ids))
    if not wanted:
        return {}
    connection()
    pk = keys.account(account_id)
    found = ContactItem.batch_get([(pk, _sk(cid)) for cid in wanted], consistent_read=True)
    return {contact.id: contact for contact in map(_of, found)}


def find_by_phones(account_id: str, phones: Iterable[str]) -> dict[str, str]:
    """`find_by_phone` for many numbers at once: phone -> contact id, for those held (one
    batch read per 100)."""
    wanted = sorted(set(phones))
    if not wanted:
        return {}
    connection()
    pk = keys.account(account_id)
    found = PhoneGuardItem.batch_get(
        [(pk, f"{PHONE_PREFIX}{phone}") for phone in wanted], consistent_read=True
    )
    return {str(guard.sk).removeprefix(PHONE_PREFIX): str(guard.contact_id) for guard in found}


def find_by_phone(account_id: str, phone: str) -> str | None:
    """The id of the contact whose primary number is `phone` (E.164), if any."""
    connection()
    try:
        guard = PhoneGuardItem.get(
            keys.account(account_id), f"{PHONE_PREFIX}{phone}", consistent_read=True
        )
    except DoesNotExist:
        return None
    return str(guard.contact_id)


@retry(
    retry=retry_if_exception_type((_Stale, Contention)),
    stop=stop_after_attempt(5),
    wait=wait_random_exponential(multiplier=0.02, max=0.3),
    reraise=True,
)
def _update_once(
    account_id: str,
    contact_id: str,
    change: Callable[[Contact], Contact],
    receipt: Item | None,
) -> Contact:
    item = _item(account_id, contact_id)
    before = _of(item)
    after = change(before)
    writes = Writes()
    _stage(writes, account_id, before, after, item)
    _commit(writes, account_id, after, receipt)
    return after


def update(
    account_id: str,
    contact_id: str,
    change: Callable[[Contact], Contact],
    *,
    receipt: Item | None = None,
) -> Contact:
    """Read, apply `change` (may raise), write everything that follows, under the version.

    A write that lost a race is tried again from a fresh read, a few times, then Conflict.
    """
    try:
        return _update_once(account_id, contact_id, change, receipt)
    except (_Stale, Contention) as error:
        raise Conflict("the contact changed at the same time; try again") from error


@retry(
    retry=retry_if_exception_type((_Stale, Contention)),
    stop=stop_after_attempt(5),
    wait=wait_random_exponential(multiplier=0.02, max=0.3),
    reraise=True,
)
def _delete_once(account_id: str, contact_id: str) -> Contact:
    item = _item(account_id, contact_id)
    before = _of(item)
    writes = Writes()
    _stage(writes, account_id, before, None, item)
    _commit(writes, account_id, None, None)
    return before


def delete(account_id: str, contact_id: str) -> Contact:
    try:
        gone = _delete_once(account_id, contact_id)
    except (_Stale, Contention) as error:
        raise Conflict("the contact changed at the same time; try again") from error
    # Its activity goes with it (an opt-out also lives on in the call record).
    partition = activity_partition(account_id, contact_id)
    with ActivityItem.batch_write() as batch:
        for item in ActivityItem.query(partition, ActivityItem.sk.startswith(ACTIVITY_PREFIX)):
            batch.delete(item)
    return gone


# ---------------------------------------------------------------- activity


def activity_partition(account_id: str, contact_id: str) -> str:
    return keys.account_scoped(account_id, "CT", contact_id)


def activity_receipt(account_id: str, activity: ContactActivity) -> ActivityItem:
    """The activity's item, to write as the receipt of the contact's update (`update`): a
    second write of the same call and type raises ReceiptExists and changes nothing."""
    suffix = f"#v{activity.analysis_version:05d}" if activity.analysis_version else ""
    return ActivityItem(
        activity_partition(account_id, activity.contact_id),
        f"{ACTIVITY_PREFIX}{activity.call_id}#{activity.type}{suffix}",
        doc=activity.model_dump_json(),
    )


def list_activity(
    account_id: str, contact_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[ContactActivity], str | None]:
    """The contact's activity, newest call first."""
    return query_page(
        ActivityItem,
        activity_partition(account_id, contact_id),
        convert=lambda item: ContactActivity.model_validate_json(item.doc),
        limit=limit,
        starting_after=starting_after,
        range_key_condition=ActivityItem.sk.startswith(ACTIVITY_PREFIX),
    )


# ---------------------------------------------------------------- lists


def list_page(
    account_id: str, filters: ContactFilters, *, limit: int, starting_after: str | None
) -> tuple[list[Contact], str | None]:
    """One page of the contacts matching every filter.

    The most selective way in answers the query, the other filters narrow it: a company's
    contacts (GSI1), else search tokens, else a tag's items, else a lead status (GSI2), else
    every contact. Lists are newest first; a search lists by matched token, then oldest first.
    """
    if filters.impossible:
        return [], None
    if filters.company_id:
        return _query(
            account_id,
            filters,
            partition=company_partition(account_id, filters.company_id),
            index="GSI1",
            limit=limit,
            starting_after=starting_after,
        )
    prefix = filters.prefix
    if prefix:
        return _walk(
            SearchTokenItem,
            search_partition(account_id),
            SearchTokenItem.sk.startswith(prefix),
            ascending=True,
            contact_of=lambda pointer: str(pointer.contact_id),
            accept=lambda pointer, contact: (
                filters.matches(contact) and _first_match(pointer, contact, prefix)
            ),
            account_id=account_id,
            limit=limit,
            starting_after=starting_after,
        )
    if filters.tag:
        return _walk(
            ContactTagItem,
            tag_partition(account_id, filters.tag),
            ContactTagItem.sk.startswith(PREFIX),
            ascending=False,
            contact_of=lambda pointer: str(pointer.sk).removeprefix(PREFIX),
            accept=lambda _, contact: filters.matches(contact),
            account_id=account_id,
            limit=limit,
            starting_after=starting_after,
        )
    status = filters.lead_status or ("dnc" if filters.do_not_call else None)
    if status:
        return _query(
            account_id,
            filters,
            partition=status_partition(account_id, status),
            index="GSI2",
            limit=limit,
            starting_after=starting_after,
        )
    return _query(
        account_id,
        filters,
        partition=keys.account(account_id),
        index=None,
        limit=limit,
        starting_after=starting_after,
    )


def _query(
    account_id: str,
    filters: ContactFilters,
    *,
    partition: str,
    index: str | None,
    limit: int,
    starting_after: str | None,
) -> tuple[list[Contact], str | None]:
    conditions: list[Condition] = []
    if index != "GSI1" and filters.company_id:
        conditions.append(ContactItem.gsi1_pk == company_partition(account_id, filters.company_id))
    if index != "GSI2":
        if filters.lead_status:
            conditions.append(
                ContactItem.gsi2_pk == status_partition(account_id, filters.lead_status)
            )
        elif filters.do_not_call is not None:
            dnc = status_partition(account_id, "dnc")
            conditions.append(
                (ContactItem.gsi2_pk == dnc)
                if filters.do_not_call
                else (ContactItem.gsi2_pk != dnc)
            )
    if filters.tag:
        conditions.append(ContactItem.tags.contains(filters.tag))
    prefix = filters.prefix
    if prefix:
        conditions.append(ContactItem.search.contains(_SEPARATOR + prefix))
    combined: Condition | None = None
    for condition in conditions:
        combined = condition if combined is None else combined & condition
    return query_page(
        ContactItem,
        partition,
        convert=_of,
        limit=limit,
        starting_after=starting_after,
        range_key_condition=ContactItem.sk.startswith(PREFIX) if index is None else None,
        filter_condition=combined,
        index=index,
    )


def _first_match(pointer: SearchTokenItem, contact: Contact, prefix: str) -> bool:
    """Whether `pointer` is the first of the contact's matching tokens in the walk's order, so
    a contact matching through several tokens is listed once, at that one."""
    matching = [t for t in search_tokens(contact) if t.startswith(prefix)]
    if not matching:
        return False
    first = min(_token_sk(token, contact.id) for token in matching)
    return bool(pointer.sk == first)


def _walk(
    model: type[P],
    partition: str,
    condition: Condition,
    *,
    ascending: bool,
    contact_of: Callable[[P], str],
    accept: Callable[[P, Contact], bool],
    account_id: str,
    limit: int,
    starting_after: str | None,
) -> tuple[list[Contact], str | None]:
    """A page through pointer items (tags, tokens): their contacts, read in batches, that
    `accept` keeps. A pointer whose contact no longer agrees with it is passed over."""
    connection()
    start = (
        decode_cursor(starting_after, partition=partition, index=None) if starting_after else None
    )
    pointers = model.query(
        partition,
        condition,
        scan_index_forward=ascending,
        last_evaluated_key=start,
        page_size=_BATCH,
    )
    kept: list[tuple[P, Contact]] = []
    examined = 0
    last: P | None = None
    for batch in _batched(pointers, _BATCH):
        found = get_many(account_id, map(contact_of, batch))
        for pointer in batch:
            contact = found.get(contact_of(pointer))
            if contact is not None and accept(pointer, contact):
                if len(kept) == limit:
                    return [c for _, c in kept], encode_cursor(kept[-1][0], None)
                kept.append((pointer, contact))
            last = pointer
            examined += 1
        if examined >= MAX_EXAMINED and last is not None:
            return [c for _, c in kept], encode_cursor(last, None)
    return [c for _, c in kept], None


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
