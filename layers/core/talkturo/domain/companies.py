"""Companies of the CRM: the organisations contacts belong to."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from talkturo.domain.common import Name, Resource, WebUrl
from talkturo.domain.phones import is_country

NAME_MAX = 200


def name_key(name: str) -> str:
    """What makes two company names the same: case and runs of whitespace do not count."""
    return " ".join(name.split()).casefold()


def _country(value: str | None) -> str | None:
    if value is None:
        return None
    code = value.strip().upper()
    if not is_country(code):
        raise ValueError("must be an ISO 3166-1 alpha-2 country code such as US or DE")
    return code


class _CompanyFields(Resource):
    website: WebUrl | None = Field(default=None, max_length=500)
    industry: str | None = Field(default=None, max_length=200)
    size: str | None = Field(
        default=None, max_length=50, description="Head count or a band such as `11-50`."
    )
    phone: str | None = Field(
        default=None,
        max_length=40,
        description="Any common format; stored as E.164 (national formats read in `country`).",
    )
    address: str | None = Field(default=None, max_length=1000)
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2, such as `US`.")
    notes: str | None = Field(default=None, max_length=10_000)

    @field_validator("country")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        return _country(value)

    @field_validator("phone")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("website", mode="before")
    @classmethod
    def _no_website(cls, value: Any) -> Any:
        # An emptied form field clears the website rather than failing as a URL.
        return None if isinstance(value, str) and not value.strip() else value


class CompanyCreate(_CompanyFields):
    name: Name = Field(min_length=1, max_length=NAME_MAX)
    custom: dict[str, Any] = Field(
        default_factory=dict, description="Values of the account's company custom fields."
    )


class CompanyUpdate(_CompanyFields):
    """Fields given replace the stored ones (null clears); `custom` is merged key by key."""

    name: Name | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    custom: dict[str, Any] | None = Field(
        default=None, description="Merged into the stored values; a null value removes a key."
    )

    @field_validator("name", "custom")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null")
        return value


class Company(BaseModel):
    object: Literal["company"] = "company"
    id: str
    name: str
    website: str | None = None
    industry: str | None = None
    size: str | None = None
    phone: str | None = None
    address: str | None = None
    country: str | None = None
    notes: str | None = None
    custom: dict[str, Any] = Field(default_factory=dict)
    contact_count: int = Field(default=0, description="How many contacts belong to it.")
    created_at: datetime
    updated_at: datetime
