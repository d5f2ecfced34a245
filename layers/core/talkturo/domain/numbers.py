"""Phone numbers the account holds: their statuses, prices, the free plan's trial number.

Lifecycle (SPEC §3): `purchasing` → `active` or `error`; `active` ⇄ `suspended`; `released` at the
end. Only an `active` number can be assigned to an assistant or used for calls. A number is held
by one account at a time and assigned to at most one assistant at a time (the store enforces
both with conditions).

Prices are data (data/number_prices.yaml), per country and type, in USD cents. A number on the
paid plan costs its monthly price in credits (at the base rate, domain.credits), charged with its
setup price when it is bought and again each month after (docs/phone-numbers.md, "What numbers
cost"); a renewal the balance cannot pay suspends the number for a grace period, after which it
is released. The free plan's trial number costs nothing.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from importlib.resources import files
from typing import Literal

import yaml
from pydantic import BaseModel, Field, NonNegativeInt, RootModel, model_validator

from talkturo.domain.common import Credits, Name, Resource
from talkturo.domain.credits import credits_of_cents
from talkturo.domain.telephony import COUNTRIES, AvailableNumber, NumberType

NumberStatus = Literal["purchasing", "active", "error", "suspended", "released"]
# Why a number is suspended: an operator's decision, or rent the balance could not pay.
SuspendedReason = Literal["operator", "unpaid"]
NUMBER_STATUSES: tuple[str, ...] = ("purchasing", "active", "error", "suspended", "released")

# The free plan's trial number lives this long before it is released automatically.
TRIAL_DAYS = 5
# How many trial numbers a free account may hold at once.
TRIAL_LIMIT = 1
E164_PATTERN = r"^\+[1-9]\d{6,14}$"
# A number whose rent could not be paid stays suspended (the carrier keeps it for the account)
# this long; credits bought meanwhile resume it, else it is released.
GRACE_DAYS = 14


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
    renews_at: datetime | None = Field(
        default=None,
        description="When the next month's rent is charged (none for a trial number).",
    )
    monthly_credits: Credits = Field(
        default=Decimal(0), description="The monthly price in credits (0 for a trial number)."
    )
    suspended_reason: SuspendedReason | None = Field(
        default=None,
        description="operator, or unpaid: the rent could not be charged (buying credits resumes "
        "the number).",
    )
    release_at: datetime | None = Field(
        default=None,
        description="An unpaid number is released then unless credits are bought before.",
    )
    created_at: datetime
    updated_at: datetime


_INTERNAL = {"carrier_sid", "rent_period", "rent_anchor_at", "anchor_period", "setup_waived"}


class PhoneNumberRecord(PhoneNumber):
    """What is stored: the answer plus the carrier's id and the rent's bookkeeping (never shown).

    Rent: `rent_period` months have been charged (the next charge is period `rent_period`,
    keyed `number:<id>:rent:<period>`); the months run from `rent_anchor_at` (the purchase,
    or the moment an unpaid number resumed), which was period `anchor_period`.
    """

    carrier_sid: str | None = None
    rent_period: int = 0
    rent_anchor_at: datetime | None = None
    anchor_period: int = 0
    setup_waived: bool = False

    def public(self) -> PhoneNumber:
        return PhoneNumber.model_validate(self.model_dump(exclude=_INTERNAL))


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


# --------------------------------------------------------------------------- rent


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later; the month's last day when it is shorter."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def rents(record: PhoneNumberRecord) -> bool:
    """Whether the number pays rent: every number but a trial one."""
    return not record.trial


def rent_key(number_id: str, period: int) -> str:
    return f"number:{number_id}:rent:{period}"


def rent_amount(record: PhoneNumberRecord, period: int) -> Decimal:
    """What period `period` costs: the first adds the setup price (waived for a number that
    began as a trial)."""
    cents = record.monthly_price_cents
    if period == 0 and not record.setup_waived:
        cents += record.setup_price_cents
    return credits_of_cents(cents)


def paid(record: PhoneNumberRecord, period: int, at: datetime) -> PhoneNumberRecord:
    """The record once period `period` is paid at `at`: its next renewal a month on (from the
    anchor, so months never drift), active again when it was suspended for rent."""
    anchor = record.rent_anchor_at
    anchor_period = record.anchor_period
    if anchor is None or record.suspended_reason == "unpaid":
        anchor, anchor_period = at, period
    update: dict[str, object] = {
        "rent_period": period + 1,
        "rent_anchor_at": anchor,
        "anchor_period": anchor_period,
        "renews_at": add_months(anchor, period + 1 - anchor_period),
    }
    if record.suspended_reason == "unpaid":
        update.update(status="active", suspended_reason=None, release_at=None)
    return record.model_copy(update=update)


def unpaid(record: PhoneNumberRecord, at: datetime) -> PhoneNumberRecord:
    """The record when its rent could not be charged: suspended for the grace period."""
    return record.model_copy(
        update={
            "status": "suspended",
            "suspended_reason": "unpaid",
            "release_at": at + timedelta(days=GRACE_DAYS),
        }
    )


def rent_due_at(record: PhoneNumberRecord) -> datetime | None:
    """When the renewal sweep must look at the number next: its renewal while active, the end
    of its grace while suspended for rent; None when nothing is due."""
    if not rents(record):
        return None
    if record.status == "active":
        return record.renews_at
    if record.status == "suspended" and record.suspended_reason == "unpaid":
        return record.release_at
    return None
