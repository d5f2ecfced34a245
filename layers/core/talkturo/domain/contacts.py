"""Contacts of the CRM: the people assistants call.

Two rules live here, as pure functions the services and the CSV import share:

- Do-not-call is one truth with two faces: `lead_status == "dnc"` and `do_not_call == true`.
  Setting either sets the other; clearing it (`do_not_call=false`, or any other status) brings
  back the status the contact had before, `new` when there was none. When a request sets both
  faces in contradiction, do-not-call wins: calling someone who asked not to be called is the
  mistake that must never happen. A CSV import may set do-not-call but never lifts it
  (`may_lift=False`): a list from elsewhere does not know who asked not to be called.
- Search: a contact is found by the start of its first name, last name, full name, email or
  phone digits (international or national), ignoring case.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic.networks import validate_email
from pydantic_core import CoreSchema, core_schema

from talkturo.domain.accounts import is_timezone
from talkturo.domain.common import Name, Resource
from talkturo.domain.phones import phone_digits

LeadStatus = Literal["new", "contacted", "qualified", "unqualified", "customer", "churned", "dnc"]
LEAD_STATUSES: tuple[str, ...] = get_args(LeadStatus)
DEFAULT_STATUS: LeadStatus = "new"

MAX_TAGS = 10
TAG_MAX = 50
# Tokens longer than this are cut: nobody types 100 characters into a search box.
TOKEN_MAX = 100
_PHONEISH = re.compile(r"^\+?[\d\s().\-/]+$")


def normalise_tag(tag: str) -> str:
    return " ".join(tag.split()).casefold()


def normalise_tags(tags: list[str]) -> list[str]:
    """Case-folded, trimmed, without empties or repeats, in the given order."""
    seen: dict[str, None] = {}
    for tag in tags:
        cleaned = normalise_tag(tag)
        if not cleaned:
            continue
        if len(cleaned) > TAG_MAX:
            raise ValueError(f"a tag is at most {TAG_MAX} characters")
        seen.setdefault(cleaned, None)
    if len(seen) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return list(seen)


@lru_cache(maxsize=4096)
def _checked_email(value: str) -> str:
    """pydantic's `EmailStr` check of `value` (its normalised address), the answer kept: a CSV
    row checks its address twice, as a change and as a new contact. A refusal is not kept,
    it is raised again each time."""
    return validate_email(value)[1]


class _EmailCheck:
    """What pydantic's `EmailStr` is (a string checked by `validate_email`, an `email` string
    in the JSON schema), with the check's answers kept (`_checked_email`)."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: type[Any], _handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            _checked_email, core_schema.str_schema()
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        field_schema = handler(schema)
        field_schema.update(type="string", format="email")
        return field_schema


Email = Annotated[str, _EmailCheck]


class _ContactFields(Resource):
    first_name: Name | None = Field(default=None, max_length=100)
    last_name: Name | None = Field(default=None, max_length=100)
    email: Email | None = None
    phone: str | None = Field(
        default=None,
        max_length=40,
        description="Any common format; stored as E.164. National formats are read in the "
        "company's country, else the US. Unique per account.",
    )
    secondary_phone: str | None = Field(default=None, max_length=40)
    job_title: Name | None = Field(default=None, max_length=200)
    company_id: str | None = None
    timezone: str | None = Field(
        default=None, description="IANA name; inferred from the phone number when absent."
    )
    source: str | None = Field(default=None, max_length=100)
    notes: str | None = Field(default=None, max_length=10_000)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not is_timezone(value):
            raise ValueError("must be an IANA time zone name such as America/Chicago")
        return value

    @field_validator(
        "first_name",
        "last_name",
        "phone",
        "secondary_phone",
        "job_title",
        "source",
        "notes",
        "company_id",
    )
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


class ContactCreate(_ContactFields):
    lead_status: LeadStatus = DEFAULT_STATUS
    do_not_call: bool = False
    tags: list[str] = Field(default_factory=list, description=f"At most {MAX_TAGS}.")
    custom: dict[str, Any] = Field(
        default_factory=dict, description="Values of the account's contact custom fields."
    )

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return normalise_tags(value)

    @model_validator(mode="after")
    def _someone(self) -> ContactCreate:
        if not (self.first_name or self.last_name or self.email or self.phone):
            raise ValueError("a contact needs at least a name, an email or a phone number")
        return self


class ContactUpdate(_ContactFields):
    """Fields given replace the stored ones (null clears); `custom` is merged key by key."""

    lead_status: LeadStatus | None = None
    do_not_call: bool | None = None
    tags: list[str] | None = Field(default=None, description="Replaces the contact's tags.")
    custom: dict[str, Any] | None = Field(
        default=None, description="Merged into the stored values; a null value removes a key."
    )

    @field_validator("lead_status", "do_not_call", "tags", "custom")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return normalise_tags(value)


class Contact(BaseModel):
    object: Literal["contact"] = "contact"
    id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = Field(default=None, description="E.164.")
    secondary_phone: str | None = None
    job_title: str | None = None
    company_id: str | None = None
    company_name: str | None = Field(
        default=None, description="The linked company's current name (read-only)."
    )
    lead_status: LeadStatus = DEFAULT_STATUS
    do_not_call: bool = False
    timezone: str | None = None
    source: str | None = None
    tags: list[str] = Field(default_factory=list)
    notes: str | None = None
    custom: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    # What `lead_status` was before do-not-call, to restore when it is lifted. Stored, not shown.
    status_before_dnc: LeadStatus | None = Field(default=None, exclude=True)


ActivityType = Literal["opted_out", "fields_updated"]


class ActivityFieldChange(BaseModel):
    """A field the call's analysis wrote, with the caller's words it came from."""

    field: str = Field(description="`email`, `custom.meeting_day` …")
    old: Any = None
    new: Any = None
    quote: str | None = None
    turn: int | None = Field(default=None, description="The caller's message in the transcript.")


class ContactActivity(BaseModel):
    """Something that happened to a contact on a call, kept on the contact."""

    object: Literal["contact_activity"] = "contact_activity"
    contact_id: str
    type: ActivityType = Field(
        description="opted_out: the contact asked during the call not to be called again and "
        "was marked do-not-call; fields_updated: the call's analysis filled fields from what "
        "the caller said."
    )
    at: datetime
    call_id: str | None = None
    detail: str | None = Field(
        default=None,
        description="What decided it: the phrase the caller said, or the assistant's opt_out "
        "function.",
    )
    analysis_version: int | None = Field(
        default=None, description="fields_updated: the version of the call's analysis."
    )
    changes: list[ActivityFieldChange] | None = Field(
        default=None, description="fields_updated: each field written (old → new, evidence)."
    )


def resolve_dnc(
    current: Contact | None,
    status: LeadStatus | None,
    do_not_call: bool | None,
    *,
    may_lift: bool = True,
) -> tuple[LeadStatus, bool, LeadStatus | None]:
    """(lead_status, do_not_call, status_before_dnc) after a request that gave `status` and/or
    `do_not_call` (None: not given) to `current` (None: a new contact).

    With `may_lift=False` (a CSV import), what would lift a current DNC (`do_not_call=False`,
    another status without `do_not_call=True`) is ignored: DNC stays as it was.
    """
    was_dnc = current is not None and current.do_not_call
    if was_dnc and not may_lift:
        if do_not_call is False:
            do_not_call = None
        if status not in (None, "dnc") and do_not_call is not True:
            status = None
    held: LeadStatus | None = current.status_before_dnc if current is not None else None
    now_status: LeadStatus = current.lead_status if current is not None else DEFAULT_STATUS
    if do_not_call is True or status == "dnc":
        if status is not None and status != "dnc":
            held = status  # set together with DNC: the status to come back to
        elif not was_dnc:
            held = now_status
        return "dnc", True, held
    if do_not_call is False or status is not None:
        if status is not None:
            return status, False, None
        if was_dnc:
            return held or DEFAULT_STATUS, False, None
        return now_status, False, None
    if current is None:
        return DEFAULT_STATUS, False, None
    return current.lead_status, current.do_not_call, current.status_before_dnc


def _token(text: str) -> str:
    return " ".join(text.split()).casefold()[:TOKEN_MAX]


def search_tokens(contact: Contact) -> set[str]:
    """What a search prefix is matched against. With both names, "first last" stands for the
    first name too (a prefix of the one is a prefix of the other): one item fewer a contact."""
    tokens: set[str] = set()
    names = [n for n in (contact.first_name, contact.last_name) if n]
    if len(names) == 2:
        tokens.add(_token(" ".join(names)))
    if names:
        tokens.add(_token(names[-1]))  # the last name, or the only one
    if contact.email:
        tokens.add(_token(contact.email))
    if contact.phone:
        tokens.update(phone_digits(contact.phone))
    tokens.discard("")
    return tokens


def retired_search_tokens(contact: Contact) -> set[str]:
    """Tokens that earlier versions wrote and search_tokens no longer does (the first name
    beside "first last"): a contact's item of one is removed when it no longer stands."""
    if contact.first_name and contact.last_name:
        return {_token(contact.first_name)} - {""}
    return set()


def search_prefix(q: str) -> str:
    """The prefix a query `q` stands for: digits only when it looks like a phone number."""
    text = q.strip()
    if _PHONEISH.match(text) and sum(c.isdigit() for c in text) >= 3:
        return "".join(c for c in text if c.isdigit())
    return _token(text)


class ContactFilters(BaseModel):
    """What a contact list is narrowed to; every filter given must hold."""

    company_id: str | None = None
    lead_status: LeadStatus | None = None
    do_not_call: bool | None = None
    tag: str | None = None
    q: str | None = None

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        return normalise_tag(value) if value is not None else None

    @property
    def prefix(self) -> str | None:
        return search_prefix(self.q) if self.q is not None else None

    @property
    def impossible(self) -> bool:
        """A lead status that contradicts the do-not-call filter: nothing can match."""
        if self.lead_status is None or self.do_not_call is None:
            return False
        return (self.lead_status == "dnc") != self.do_not_call

    def matches(self, contact: Contact) -> bool:
        if self.company_id is not None and contact.company_id != self.company_id:
            return False
        if self.lead_status is not None and contact.lead_status != self.lead_status:
            return False
        if self.do_not_call is not None and contact.do_not_call != self.do_not_call:
            return False
        if self.tag is not None and self.tag not in contact.tags:
            return False
        prefix = self.prefix
        return prefix is None or any(t.startswith(prefix) for t in search_tokens(contact))
