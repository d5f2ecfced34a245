"""Companies and their name guards.

Items (see docs/data-model.md):
- Company    PK=A#<acct> SK=CO#<co id>: the document, plus `contact_count`, a number attribute
  of its own that contact writes move with ADD in their own transactions (never through the
  document, so a company edit and a contact write never overwrite each other).
- Name guard PK=A#<acct> SK=CONAME#<name key>: the company holding that name (the key is the
  name case-folded, whitespace collapsed), written in the company's transactions, so a name
  exists once per account. The CSV import finds companies by name through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from talkturo.domain.companies import Company, name_key
from talkturo.errors import Conflict, NotFound
from talkturo.store import keys
from talkturo.store.paging import query_page
from talkturo.store.table import Document, Item, connection
from talkturo.store.transact import Contention, Refused, Writes

PREFIX = "CO#"
NAME_PREFIX = "CONAME#"


class CompanyItem(Document):
    """PK=A#<acct> SK=CO#<co id>."""

    contact_count = NumberAttribute(default=0)


class CompanyCounter(Item):
    """The same item as CompanyItem, seen only as its counter: updates here leave the document
    and its version alone."""

    contact_count = NumberAttribute(null=True)


class CompanyNameItem(Item):
    """PK=A#<acct> SK=CONAME#<name key>."""

    company_id = UnicodeAttribute()


# Built once: a transaction's update serializes a condition once per condition object
# (store/transact.py), and every contact write moves a count under it.
_COUNTED = CompanyCounter.pk.exists()


class _Stale(Exception):
    """The company changed between read and write."""


def company_sk(company_id: str) -> str:
    return f"{PREFIX}{company_id}"


def _name_sk(name: str) -> str:
    return f"{NAME_PREFIX}{name_key(name)}"


def _of(item: CompanyItem) -> Company:
    company = Company.model_validate_json(item.doc)
    company.contact_count = int(item.contact_count or 0)
    return company


def _doc(company: Company) -> str:
    return company.model_dump_json(exclude={"contact_count"})


def create(account_id: str, company: Company) -> None:
    """The company and its name guard, together; Conflict when the name is taken."""
    pk = keys.account(account_id)
    writes = Writes()
    writes.put(
        "name",
        CompanyNameItem(pk, _name_sk(company.name), company_id=company.id),
        CompanyNameItem.pk.does_not_exist(),
    )
    writes.put(
        "company",
        CompanyItem(pk, company_sk(company.id), doc=_doc(company), contact_count=0),
        CompanyItem.pk.does_not_exist(),
    )
    try:
        writes.commit()
    except Refused as refused:
        if "name" in refused.labels:
            raise _name_taken(account_id, company.name) from None
        raise
    except Contention as error:
        raise Conflict("the company changed at the same time; try again") from error


def _name_taken(account_id: str, name: str) -> Conflict:
    holder = find_by_name(account_id, name)
    which = f" ({holder})" if holder else ""
    return Conflict(f"a company named {name!r} already exists{which}", param="name")


def find_by_name(account_id: str, name: str) -> str | None:
    """The id of the account's company with this name (ignoring case and spacing), if any."""
    connection()
    try:
        guard = CompanyNameItem.get(keys.account(account_id), _name_sk(name), consistent_read=True)
    except DoesNotExist:
        return None
    return str(guard.company_id)


def find_by_names(account_id: str, names: Iterable[str]) -> dict[str, str]:
    """`find_by_name` for many names at once: name key -> company id, for those that exist
    (one batch read per 100)."""
    wanted = sorted({_name_sk(name) for name in names})
    if not wanted:
        return {}
    connection()
    pk = keys.account(account_id)
    found = CompanyNameItem.batch_get([(pk, sk) for sk in wanted], consistent_read=True)
    return {str(guard.sk).removeprefix(NAME_PREFIX): str(guard.company_id) for guard in found}


def _item(account_id: str, company_id: str) -> CompanyItem:
    connection()
    try:
        return CompanyItem.get(
            keys.account(account_id), company_sk(company_id), consistent_read=True
        )
    except DoesNotExist:
        raise NotFound("no such company", param="id") from None


def get(account_id: str, company_id: str) -> Company:
    return _of(_item(account_id, company_id))


def get_many(account_id: str, company_ids: Iterable[str]) -> dict[str, Company]:
    """The companies among `company_ids` that exist, by id (one batch read per 100)."""
    wanted = sorted(set(company_ids))
    if not wanted:
        return {}
    connection()
    pk = keys.account(account_id)
    found = CompanyItem.batch_get([(pk, company_sk(cid)) for cid in wanted])
    return {company.id: company for company in map(_of, found)}


def list_page(
    account_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[Company], str | None]:
    return query_page(
        CompanyItem,
        keys.account(account_id),
        convert=_of,
        limit=limit,
        starting_after=starting_after,
        range_key_condition=CompanyItem.sk.startswith(PREFIX),
    )


@retry(
    retry=retry_if_exception_type((_Stale, Contention)),
    stop=stop_after_attempt(5),
    wait=wait_random_exponential(multiplier=0.02, max=0.3),
    reraise=True,
)
def _update_once(account_id: str, company_id: str, change: Callable[[Company], Company]) -> Company:
    item = _item(account_id, company_id)
    before = _of(item)
    after = change(before)
    pk = keys.account(account_id)
    writes = Writes()
    if name_key(after.name) != name_key(before.name):
        writes.delete(
            "old_name",
            CompanyNameItem(pk, _name_sk(before.name)),
            CompanyNameItem.company_id == company_id,
        )
        writes.put(
            "name",
            CompanyNameItem(pk, _name_sk(after.name), company_id=company_id),
            CompanyNameItem.pk.does_not_exist(),
        )
    # An update, not a put: the counter attribute is left as contact writes made it.
    writes.update("company", item, [CompanyItem.doc.set(_doc(after))], CompanyItem.pk.exists())
    try:
        writes.commit()
    except Refused as refused:
        if "name" in refused.labels:
            raise _name_taken(account_id, after.name) from None
        raise _Stale from refused
    after.contact_count = before.contact_count
    return after


def update(account_id: str, company_id: str, change: Callable[[Company], Company]) -> Company:
    """Read, apply `change` (pure, may raise), write under the version; retried on a race."""
    try:
        return _update_once(account_id, company_id, change)
    except (_Stale, Contention) as error:
        raise Conflict("the company changed at the same time; try again") from error


def delete(account_id: str, company_id: str) -> Company:
    """Remove a company that no contact belongs to (Conflict otherwise)."""
    item = _item(account_id, company_id)
    company = _of(item)
    pk = keys.account(account_id)
    writes = Writes()
    writes.delete("name", CompanyNameItem(pk, _name_sk(company.name)), add_version_condition=False)
    no_contacts = CompanyItem.contact_count.does_not_exist() | (CompanyItem.contact_count == 0)
    writes.delete("company", item, no_contacts)
    try:
        writes.commit()
    except (Refused, Contention) as error:
        count = _of(_item(account_id, company_id)).contact_count
        if count:
            raise Conflict(
                f"the company still has {count} contact(s); move or delete them first",
                param="id",
            ) from None
        raise Conflict("the company changed at the same time; try again") from error
    return company


def stage_count(writes: Writes, label: str, account_id: str, company_id: str, delta: int) -> None:
    """Add to a contact's transaction: move the company's contact_count by `delta`; the write
    (and with it the whole transaction) is refused under `label` when the company is gone."""
    writes.update(
        label,
        CompanyCounter(keys.account(account_id), company_sk(company_id)),
        [CompanyCounter.contact_count.add(delta)],
        _COUNTED,
    )
