"""Accounts (tenants) and their API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import available_timezones

from pydantic import BaseModel, EmailStr, Field, field_validator

from talkturo.domain.common import Name, Resource

Plan = Literal["free", "paid"]

_ZONES: frozenset[str] | None = None


def is_timezone(name: str) -> bool:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    return name in _ZONES


class AccountCreate(Resource):
    name: Name = Field(min_length=1, max_length=200)
    email: EmailStr | None = None
    default_timezone: str = "America/New_York"

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not is_timezone(value):
            raise ValueError("must be an IANA time zone name such as Europe/Berlin")
        return value


class AccountUpdate(Resource):
    name: Name | None = Field(default=None, min_length=1, max_length=200)
    email: EmailStr | None = None
    default_timezone: str | None = None

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not is_timezone(value):
            raise ValueError("must be an IANA time zone name such as Europe/Berlin")
        return value


class Account(BaseModel):
    object: Literal["account"] = "account"
    id: str
    name: str
    email: str | None = None
    plan: Plan = "free"
    default_timezone: str = "America/New_York"
    created_at: datetime


class ApiKeyCreate(Resource):
    name: Name = Field(default="default", min_length=1, max_length=100)


class ApiKey(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyWithSecret(ApiKey):
    secret: str = Field(description="The key itself. Shown once, at creation; store it safely.")


class Principal(BaseModel):
    """Who a request acts for, resolved from its API key."""

    account_id: str
    key_id: str
