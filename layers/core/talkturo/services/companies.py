"""Companies of the CRM."""

from __future__ import annotations

from talkturo.domain.common import Page, utcnow
from talkturo.domain.companies import Company, CompanyCreate, CompanyUpdate
from talkturo.domain.custom_fields import merge_custom
from talkturo.domain.phones import InvalidPhone, normalise_phone
from talkturo.errors import Conflict, InvalidRequest, NotFound
from talkturo.ids import new_id
from talkturo.services import custom_fields
from talkturo.store import companies as store


def phone_of(raw: str | None, country: str | None, *, param: str = "phone") -> str | None:
    """`raw` as E.164 (national formats read in `country`, else the US); None stays None."""
    if raw is None:
        return None
    try:
        return normalise_phone(raw, country)
    except InvalidPhone as error:
        raise InvalidRequest(f"{param}: {error}", param=param) from None


def create(account_id: str, data: CompanyCreate) -> Company:
    phone = phone_of(data.phone, data.country)
    custom: dict[str, object] = {}
    if data.custom:
        checked = custom_fields.check_values(
            custom_fields.definitions(account_id, "company"), data.custom
        )
        custom = merge_custom({}, checked)
    now = utcnow()
    company = Company(
        id=new_id("company"),
        created_at=now,
        updated_at=now,
        **data.model_dump(exclude={"phone", "custom"}),
        phone=phone,
        custom=custom,
    )
    store.create(account_id, company)
    return company


def get(account_id: str, company_id: str) -> Company:
    return store.get(account_id, company_id)


def list_companies(account_id: str, *, limit: int, starting_after: str | None) -> Page[Company]:
    data, cursor = store.list_page(account_id, limit=limit, starting_after=starting_after)
    return Page[Company](data=data, has_more=cursor is not None, next_cursor=cursor)


def update(account_id: str, company_id: str, changes: CompanyUpdate) -> Company:
    given = changes.model_dump(exclude_unset=True)
    custom_changes = given.pop("custom", None)
    if custom_changes:
        custom_changes = custom_fields.check_values(
            custom_fields.definitions(account_id, "company"), custom_changes
        )

    def change(company: Company) -> Company:
        updates = dict(given)
        if given.get("phone"):
            updates["phone"] = phone_of(given["phone"], given.get("country", company.country))
        if custom_changes:
            updates["custom"] = merge_custom(company.custom, custom_changes)
        updates["updated_at"] = utcnow()
        return company.model_copy(update=updates)

    return store.update(account_id, company_id, change)


def delete(account_id: str, company_id: str) -> Company:
    """Remove a company; refused (409) while contacts still belong to it."""
    return store.delete(account_id, company_id)


def find_named(account_id: str, name: str) -> Company | None:
    """The account's company with this name (ignoring case and spacing), if any."""
    found = store.find_by_name(account_id, name)
    if found is None:
        return None
    try:
        return store.get(account_id, found)
    except NotFound:
        return None  # deleted since the guard was read


def find_or_create(account_id: str, name: str, *, absent: bool = False) -> tuple[Company, bool]:
    """The account's company with this name (ignoring case and spacing), created when there is
    none; and whether it was created. `absent`: the name was just read and is free, so the
    creation is tried first (its name guard refuses it if the name was taken since)."""
    data = CompanyCreate(name=name)
    for attempt in range(3):
        found = None if absent and not attempt else store.find_by_name(account_id, data.name)
        if found is not None:
            try:
                return store.get(account_id, found), False
            except NotFound:
                continue  # deleted since the guard was read: look again
        try:
            return create(account_id, data), True
        except Conflict:
            continue  # created by someone else meanwhile: find it
    raise Conflict(f"the company {name!r} keeps changing; try again", param="company")
