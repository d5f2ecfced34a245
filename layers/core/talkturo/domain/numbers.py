"""Phone numbers the account holds: their statuses, prices, the free plan's trial number.

Lifecycle (SPEC §3): `purchasing` → `active` or `error`; `active` ⇄ `suspended`; `released` at the
end. Only an `active` number can be assigned to an assistant or used for calls. A number is held
by one account at a time and assigned to at most one assistant at a time (the store enforces
both with conditions).

Prices are data (data/number_prices.yaml), per country and type, in USD cents.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from importlib.resources import files
from typing import Literal

import yaml
from pydantic import BaseModel, Field, NonNegativeInt, RootModel, model_validator

from talkturo.domain.common import Name, Resource
from talkturo.domain.telephony import COUNTRIES, AvailableNumber, NumberType

NumberStatus = Literal["purchasing", "active", "error", "suspended", "released"]
NUMBER_STATUSES: tuple[str, ...] = ("purchasing", "active", "error", "suspended", "released")

# The free plan's trial number lives this long before it is released automatically.
TRIAL_DAYS = 5
# How many trial numbers a free account may hold at once.
TRIAL_LIMIT = 1
E164_PATTERN = r"^\+[1-9]\d{6,14}$"


# --------------------------------------------------------------------------- prices


class NumberPrice(BaseModel):
    monthly: NonNegativeInt = Field(description="USD cents per month")
    setup: NonNegativeInt = Field(description="USD cents, once, at purchase")


class NumberPrices(RootModel[dict[str, dict[NumberType, NumberPrice]]]):
    @model_validator(mode="after")
    def _countries(self) -> NumberPrices:
        unknown = set(self.root) - set(COUNTRIES)
        if unknown:
            raise ValueError(f"prices for countries the platform does not serve: {unknown}")
        missing = set(COUNTRIES) - set(self.root)
        if missing:
            raise ValueError(f"no prices for {sorted(missing)}")
        return self

    def price(self, country: str, number_type: str) -> NumberPrice:
        try:
            return self.root[country][number_type]  # type: ignore[index]
        except KeyError:
            raise LookupError(f"no price for {country} {number_type} numbers") from None


def load_number_prices(text: str) -> NumberPrices:
    return NumberPrices.model_validate(yaml.safe_load(text))


@lru_cache(maxsize=1)
def get_number_prices() -> NumberPrices:
    """The price table, read once per process on first use."""
    text = files("talkturo").joinpath("data/number_prices.yaml").read_text("utf-8")
    return load_number_prices(text)


def country_of(phone_number: str) -> str | None:
    """The served country of an E.164 number, or None (phonenumbers knows the plans)."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(phone_number, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return region if region in COUNTRIES else None


def is_toll_free(phone_number: str) -> bool:
    import phonenumbers

    try:
        parsed = phonenumbers.parse(phone_number, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.TOLL_FREE


# --------------------------------------------------------------------------- API objects


class AvailablePhoneNumber(AvailableNumber):
    """A number on offer now, with what it costs."""

    object: Literal["available_phone_number"] = "available_phone_number"
    monthly_price_cents: int
    setup_price_cents: int


class AvailableList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AvailablePhoneNumber]


class PhoneNumber(BaseModel):
    object: Literal["phone_number"] = "phone_number"
    id: str
    phone_number: str = Field(description="E.164")
    country: str
    type: NumberType
    friendly_name: str
    status: NumberStatus
    assistant_id: str | None = None
    monthly_price_cents: int
    setup_price_cents: int
    trial: bool = Field(
        default=False,
        description="A free plan's trial number: no charge, released at expires_at.",
    )
    expires_at: datetime | None = None
    error_message: str | None = Field(
        default=None, description="Why provisioning failed (status error)."
    )
    created_at: datetime
    updated_at: datetime


class PhoneNumberRecord(PhoneNumber):
    """What is stored: the answer plus the carrier's id (never shown)."""

    carrier_sid: str | None = None

    def public(self) -> PhoneNumber:
        return PhoneNumber.model_validate(self.model_dump(exclude={"carrier_sid"}))


class PhoneNumberBuy(Resource):
    phone_number: str = Field(
        pattern=E164_PATTERN, description="E.164, one of GET /v1/phone-numbers/available."
    )
    friendly_name: Name | None = Field(default=None, min_length=1, max_length=100)


class PhoneNumberUpdate(Resource):
    friendly_name: Name = Field(min_length=1, max_length=100)


class PhoneNumberAssign(Resource):
    assistant_id: str = Field(min_length=1, max_length=64)


class ProvisionJob(BaseModel):
    """The provisioning queue's message."""

    account_id: str
    number_id: str


# --------------------------------------------------------------------------- rules


def friendly_default(phone_number: str) -> str:
    """How a number reads for people when no name is given: `+1 415-555-0101`."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(phone_number, None)
    except phonenumbers.NumberParseException:
        return phone_number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def trial_expiry(purchased_at: datetime) -> datetime:
    return purchased_at + timedelta(days=TRIAL_DAYS)


def assignable_problem(number: PhoneNumber) -> str | None:
    """Why the number cannot be assigned now, or None."""
    if number.status == "active":
        return None
    if number.status == "purchasing":
        return "the number is still being provisioned; assign it once its status is active"
    return f"only active numbers can be assigned; this one is {number.status}"
