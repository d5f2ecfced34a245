"""Contacts of the CRM: the one write path the API and the CSV import share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from talkturo.domain.common import Page, utcnow
from talkturo.domain.companies import Company, name_key
from talkturo.domain.contacts import (
    Contact,
    ContactActivity,
    ContactCreate,
    ContactFilters,
    ContactUpdate,
    resolve_dnc,
)
from talkturo.domain.custom_fields import CustomField, merge_custom
from talkturo.domain.phones import infer_timezone
from talkturo.errors import InvalidRequest, NotFound
from talkturo.ids import new_id
from talkturo.services import companies, custom_fields
from talkturo.services.companies import phone_of
from talkturo.store import companies as company_store
from talkturo.store import contacts as store
from talkturo.store.table import Item


class Lookups:
    """What contact writes read besides the contact (companies, the custom field schema),
    read once per request, or once per chunk of an import."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self._companies: dict[str, Company] = {}
        self._named: dict[str, Company | None] = {}  # by name_key; None: no such company
        self._fields: list[CustomField] | None = None
        self._holders: dict[str, str | None] = {}  # phone -> contact id; None: nobody
        self._items: dict[str, store.ContactItem] = {}  # read ahead, each for one write

    def prefetch(self, company_names: Iterable[str], phones: Iterable[str]) -> None:
        """Read these companies and phone numbers in a few batch reads, for the rows to come
        (an import's chunk), instead of one read each."""
        names = {name_key(name): name for name in company_names}
        names = {key: name for key, name in names.items() if key not in self._named}
        if names:
            ids = company_store.find_by_names(self.account_id, names.values())
            found = company_store.get_many(self.account_id, ids.values())
            for key in names:
                company = found.get(ids.get(key, ""))
                self._named[key] = company
                if company is not None:
                    self._companies[company.id] = company
        wanted = {phone for phone in phones if phone not in self._holders}
        if wanted:
            held = store.find_by_phones(self.account_id, wanted)
            self._holders.update({phone: held.get(phone) for phone in wanted})

    def prefetch_contacts(self, contact_ids: Iterable[str]) -> None:
        """Read these contacts in batches, each for the one write to come (an import's rows
        updating them)."""
        self._items.update(store.items_of(self.account_id, contact_ids))

    def take_item(self, contact_id: str) -> store.ContactItem | None:
        """The contact's item read ahead (once: a second write reads it afresh)."""
        return self._items.pop(contact_id, None)

    def held(self, phone: str) -> str | None:
        """The holder of `phone` when known already (no read)."""
        return self._holders.get(phone)

    def holder_of(self, phone: str) -> str | None:
        """The contact holding this primary number, if any (`find_by_phone`, remembered)."""
        if phone not in self._holders:
            self._holders[phone] = store.find_by_phone(self.account_id, phone)
        return self._holders[phone]

    def now_held(self, phone: str, contact_id: str) -> None:
        """A write just gave `phone` to `contact_id`: later rows must see it."""
        self._holders[phone] = contact_id

    def company(self, company_id: str) -> Company:
        """The account's company, or 422 naming `company_id`."""
        if company_id not in self._companies:
            try:
                self._companies[company_id] = company_store.get(self.account_id, company_id)
            except NotFound:
                raise InvalidRequest("no such company", param="company_id") from None
        return self._companies[company_id]

    def company_named(self, name: str) -> Company | None:
        """The company with this name (ignoring case and spacing), or None; never creates."""
        key = name_key(name)
        if key not in self._named:
            company = companies.find_named(self.account_id, name)
            self._named[key] = company
            if company is not None:
                self._companies[company.id] = company
        return self._named[key]

    def company_for(self, name: str) -> tuple[Company, bool]:
        """The company with this name, created when missing (and whether it was created)."""
        company = self.company_named(name)
        if company is not None:
            return company, False
        # Read just now and not found: create it first, as the name guard keeps it once.
        company, created = companies.find_or_create(self.account_id, name, absent=True)
        self._named[name_key(name)] = self._companies[company.id] = company
        return company, created

    def custom(self, values: Mapping[str, Any]) -> dict[str, Any]:
        if not values:
            return {}
        if self._fields is None:
            self._fields = custom_fields.definitions(self.account_id, "contact")
        return custom_fields.check_values(self._fields, values)

    def name_of(self, company_id: str | None) -> str | None:
        if company_id is None:
            return None
        try:
            return self.company(company_id).name
        except InvalidRequest:
            return None


def create(
    account_id: str,
    data: ContactCreate,
    *,
    lookups: Lookups | None = None,
    receipt: Item | None = None,
) -> Contact:
    lookups = lookups or Lookups(account_id)
    contact = new_contact(account_id, data, lookups)
    store.create(account_id, contact, receipt=receipt)
    return contact


def new_contact(account_id: str, data: ContactCreate, lookups: Lookups) -> Contact:
    """The contact `create` writes (checked, not yet written)."""
    company = lookups.company(data.company_id) if data.company_id else None
    country = company.country if company else None
    phone = phone_of(data.phone, country)
    given = data.model_fields_set
    status, dnc, held = resolve_dnc(
        None,
        data.lead_status if "lead_status" in given else None,
        data.do_not_call if "do_not_call" in given else None,
    )
    now = utcnow()
    contact = Contact(
        **data.model_dump(
            exclude={"phone", "secondary_phone", "custom", "lead_status", "do_not_call"}
        ),
        id=new_id("contact"),
        phone=phone,
        secondary_phone=phone_of(data.secondary_phone, country, param="secondary_phone"),
        custom=merge_custom({}, lookups.custom(data.custom)),
        lead_status=status,
        do_not_call=dnc,
        status_before_dnc=held,
        created_at=now,
        updated_at=now,
    )
    if contact.timezone is None:
        contact.timezone = infer_timezone(phone)
    contact.company_name = company.name if company else None
    return contact


def update(
    account_id: str,
    contact_id: str,
    changes: ContactUpdate,
    *,
    lookups: Lookups | None = None,
    receipt: Item | None = None,
    may_lift_dnc: bool = True,
) -> Contact:
    """Apply `changes`; with `may_lift_dnc=False` (a CSV import) a change that would make a DNC
    contact callable again is ignored, the other changes apply (see `resolve_dnc`)."""
    lookups = lookups or Lookups(account_id)
    change = changer(changes, lookups, may_lift_dnc=may_lift_dnc)
    contact = store.update(account_id, contact_id, change, receipt=receipt)
    contact.company_name = lookups.name_of(contact.company_id)
    return contact


def changer(
    changes: ContactUpdate, lookups: Lookups, *, may_lift_dnc: bool = True
) -> Callable[[Contact], Contact]:
    """What `update` does to the contact as it reads it (checked first; it may still refuse)."""
    given = changes.model_dump(exclude_unset=True)
    status_given = given.pop("lead_status", None)
    dnc_given = given.pop("do_not_call", None)
    custom_changes = lookups.custom(given.pop("custom")) if "custom" in given else None
    if given.get("company_id"):
        lookups.company(given["company_id"])

    def change(current: Contact) -> Contact:
        updates: dict[str, Any] = dict(given)
        company_id = given.get("company_id", current.company_id)
        if given.get("phone") or given.get("secondary_phone"):
            country = lookups.company(company_id).country if company_id else None
            for field in ("phone", "secondary_phone"):
                if given.get(field):
                    updates[field] = phone_of(given[field], country, param=field)
        status, dnc, held = resolve_dnc(current, status_given, dnc_given, may_lift=may_lift_dnc)
        updates.update(lead_status=status, do_not_call=dnc, status_before_dnc=held)
        if custom_changes is not None:
            updates["custom"] = merge_custom(current.custom, custom_changes)
        phone = updates.get("phone", current.phone)
        if "timezone" not in given and phone != current.phone:
            # A zone that came from the old number follows the new one; a chosen one stays.
            if current.timezone in (None, infer_timezone(current.phone)):
                updates["timezone"] = infer_timezone(phone)
        elif given.get("timezone", current.timezone) is None:
            updates["timezone"] = infer_timezone(phone)
        updates["updated_at"] = utcnow()
        after = current.model_copy(update=updates)
        if not (after.first_name or after.last_name or after.email or after.phone):
            cleared = [f for f in ("first_name", "last_name", "email", "phone") if f in given]
            raise InvalidRequest(
                "a contact needs at least a name, an email or a phone number",
                param=cleared[0] if cleared else "first_name",
            )
        return after

    return change


def get(account_id: str, contact_id: str) -> Contact:
    contact = store.get(account_id, contact_id)
    contact.company_name = Lookups(account_id).name_of(contact.company_id)
    return contact


def delete(account_id: str, contact_id: str) -> Contact:
    contact = store.delete(account_id, contact_id)
    contact.company_name = Lookups(account_id).name_of(contact.company_id)
    return contact


def list_contacts(
    account_id: str, filters: ContactFilters, *, limit: int, starting_after: str | None
) -> Page[Contact]:
    data, cursor = store.list_page(account_id, filters, limit=limit, starting_after=starting_after)
    names = company_store.get_many(account_id, (c.company_id for c in data if c.company_id))
    for contact in data:
        company = names.get(contact.company_id or "")
        contact.company_name = company.name if company else None
    return Page[Contact](data=data, has_more=cursor is not None, next_cursor=cursor)


def find_by_phone(account_id: str, phone: str) -> str | None:
    """The contact holding this primary number (E.164), if any."""
    return store.find_by_phone(account_id, phone)


def opt_out(account_id: str, contact_id: str, *, call_id: str, detail: str) -> bool:
    """The contact asked on `call_id` not to be called again: do-not-call, with the activity
    entry, in one transaction. False when that call had already recorded it (nothing written)."""
    activity = ContactActivity(
        contact_id=contact_id, type="opted_out", at=utcnow(), call_id=call_id, detail=detail
    )
    try:
        update(
            account_id,
            contact_id,
            ContactUpdate(do_not_call=True),
            receipt=store.activity_receipt(account_id, activity),
        )
    except store.ReceiptExists:
        return False
    return True


def list_activity(
    account_id: str, contact_id: str, *, limit: int, starting_after: str | None
) -> Page[ContactActivity]:
    store.get(account_id, contact_id)  # 404 for a contact that does not exist
    data, cursor = store.list_activity(
        account_id, contact_id, limit=limit, starting_after=starting_after
    )
    return Page[ContactActivity](data=data, has_more=cursor is not None, next_cursor=cursor)
