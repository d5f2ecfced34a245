"""Buying credits: the packages (data/credit_packages.yaml), what a payment buys, and the
Stripe objects the platform reads, in its own types (only talkturo.billing touches Stripe).

Pure: no I/O beyond reading the package file once. The rules here decide how many credits a
payment grants (purchase + bonus), how many a refund or a dispute takes back (pro rata of what
was granted, bonus included) and the idempotency keys that make each of them happen once.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from importlib.resources import files
from typing import Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator

from talkturo.domain.auto_reload import ReloadJob
from talkturo.domain.common import Credits, Resource, quantize_credits

# Our ids in a PaymentIntent's metadata (`payment_intent_data.metadata` at checkout: the
# Checkout Session's own metadata is not copied to the PaymentIntent).
META_ACCOUNT = "talkturo_account"
META_PACKAGE = "talkturo_package"
META_CREDITS = "talkturo_credits"
META_BONUS = "talkturo_bonus"
# Set on auto-reload payments (off-session): which reload of the account this is.
META_RELOAD = "talkturo_reload"
CUSTOM = "custom"

# The events the billing worker applies; any other type is stored and acknowledged only.
GRANTING_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "payment_intent.succeeded",
    }
)
REFUND_EVENTS = frozenset(
    {"charge.refunded", "charge.refund.updated", "refund.updated", "refund.failed"}
)
DISPUTE_EVENTS = frozenset(
    {
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
    }
)
HANDLED_EVENTS = GRANTING_EVENTS | REFUND_EVENTS | DISPUTE_EVENTS


# ----------------------------------------------------------------------------- packages
class CreditPackage(BaseModel):
    object: Literal["credit_package"] = "credit_package"
    id: str
    name: str
    amount_cents: int = Field(gt=0, description="What the package costs, in USD cents.")
    credits: Credits = Field(description="Every credit it buys, bonus included.")
    bonus_credits: Credits = Field(
        default=Decimal(0), description="The credits above the base rate ($1 = 2 credits)."
    )
    currency: Literal["usd"] = "usd"


class CustomAmount(BaseModel):
    min_cents: int = Field(gt=0)
    max_cents: int = Field(gt=0)
    credits_per_dollar: Credits


class PackageList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CreditPackage]
    custom: CustomAmount = Field(
        description="Any amount between min_cents and max_cents, at the base rate."
    )


class _PackageFile(BaseModel):
    currency: Literal["usd"]
    base_credits_per_dollar: Decimal = Field(gt=0)
    custom: dict[str, int]
    packages: list[dict[str, object]]


class Packages(BaseModel):
    base_credits_per_dollar: Decimal
    custom: CustomAmount
    packages: list[CreditPackage]

    def find(self, package_id: str) -> CreditPackage | None:
        return next((p for p in self.packages if p.id == package_id), None)

    def base_credits(self, amount_cents: int) -> Decimal:
        return quantize_credits(Decimal(amount_cents) * self.base_credits_per_dollar / 100)


def load_packages(text: str) -> Packages:
    raw = _PackageFile.model_validate(yaml.safe_load(text))
    rate = raw.base_credits_per_dollar
    custom = CustomAmount(
        min_cents=raw.custom["min_cents"],
        max_cents=raw.custom["max_cents"],
        credits_per_dollar=rate,
    )
    if custom.min_cents > custom.max_cents:
        raise ValueError("credit packages: custom.min_cents is above custom.max_cents")
    packages: list[CreditPackage] = []
    for entry in raw.packages:
        package = CreditPackage.model_validate(entry)
        base = quantize_credits(Decimal(package.amount_cents) * rate / 100)
        if package.credits < base:
            raise ValueError(f"credit package {package.id} buys less than the base rate")
        packages.append(package.model_copy(update={"bonus_credits": package.credits - base}))
    if len({p.id for p in packages}) != len(packages) or CUSTOM in {p.id for p in packages}:
        raise ValueError("credit packages: ids must be unique and not 'custom'")
    return Packages(base_credits_per_dollar=rate, custom=custom, packages=packages)


@lru_cache(maxsize=1)
def get_packages() -> Packages:
    return load_packages(files("talkturo").joinpath("data/credit_packages.yaml").read_text("utf-8"))


def package_list() -> PackageList:
    packages = get_packages()
    return PackageList(data=packages.packages, custom=packages.custom)


# ----------------------------------------------------------------------------- purchases
class Purchase(BaseModel):
    """What one payment buys: its price, and the ledger's purchase and bonus entries."""

    package: str = Field(description="A package id, or 'custom'.")
    amount_cents: int
    credits: Decimal = Field(description="Purchase entry: the amount at the base rate.")
    bonus: Decimal = Field(default=Decimal(0), description="Bonus entry (0: none).")

    @property
    def total(self) -> Decimal:
        return self.credits + self.bonus

    def metadata(self, account_id: str) -> dict[str, str]:
        return {
            META_ACCOUNT: account_id,
            META_PACKAGE: self.package,
            META_CREDITS: f"{self.total:.4f}",
            META_BONUS: f"{self.bonus:.4f}",
        }


def purchase_of(package_id: str | None, amount_cents: int | None) -> Purchase:
    """The purchase a checkout asks for: a package, or a custom amount (ValueError otherwise,
    naming the field as `field: reason`)."""
    packages = get_packages()
    if package_id is not None and package_id != CUSTOM:
        package = packages.find(package_id)
        if package is None:
            known = ", ".join(p.id for p in packages.packages)
            raise ValueError(f"package: no such package (one of {known}, or custom)")
        if amount_cents is not None and amount_cents != package.amount_cents:
            raise ValueError("amount_cents: a package has its own price; leave amount_cents out")
        return Purchase(
            package=package.id,
            amount_cents=package.amount_cents,
            credits=package.credits - package.bonus_credits,
            bonus=package.bonus_credits,
        )
    if amount_cents is None:
        raise ValueError("amount_cents: give a package, or a custom amount in cents")
    custom = packages.custom
    if not custom.min_cents <= amount_cents <= custom.max_cents:
        raise ValueError(
            f"amount_cents: a custom amount is between {custom.min_cents} and "
            f"{custom.max_cents} cents"
        )
    return Purchase(
        package=CUSTOM, amount_cents=amount_cents, credits=packages.base_credits(amount_cents)
    )


def purchase_from_payment(amount_cents: int, currency: str, metadata: dict[str, str]) -> Purchase:
    """What a succeeded PaymentIntent buys, from its amount and our metadata, recomputed from
    the package table: a payment whose metadata does not agree (another amount, other credits)
    grants nothing (ValueError, the reason)."""
    if currency.lower() != "usd":
        raise ValueError(f"the payment is in {currency}, not usd")
    package = metadata.get(META_PACKAGE)
    if not package:
        raise ValueError("the payment names no package")
    purchase = purchase_of(package, amount_cents if package == CUSTOM else None)
    if purchase.amount_cents != amount_cents:
        raise ValueError(
            f"the payment of {amount_cents} cents does not match package {package} "
            f"({purchase.amount_cents} cents)"
        )
    stated = metadata.get(META_CREDITS)
    if stated is not None:
        try:
            matches = quantize_credits(Decimal(stated)) == purchase.total
        except ArithmeticError:
            matches = False
        if not matches:
            raise ValueError(
                f"the payment states {stated} credits, the package gives {purchase.total}"
            )
    return purchase


def pro_rata(total_credits: Decimal, part_cents: int, amount_cents: int) -> Decimal:
    """The share of `total_credits` that `part_cents` of a payment of `amount_cents` is."""
    if amount_cents <= 0 or part_cents <= 0:
        return Decimal(0)
    part = min(part_cents, amount_cents)
    return quantize_credits(total_credits * part / amount_cents)


# Idempotency keys of the ledger entries a payment causes (one range per payment intent).
def purchase_key(payment_intent_id: str) -> str:
    return f"stripe:{payment_intent_id}:purchase"


def bonus_key(payment_intent_id: str) -> str:
    return f"stripe:{payment_intent_id}:bonus"


def refund_key(payment_intent_id: str, refund_id: str) -> str:
    return f"stripe:{payment_intent_id}:refund:{refund_id}"


def failed_refund_key(payment_intent_id: str, refund_id: str) -> str:
    """The entry that gives back what a refund took, once that refund failed."""
    return f"{refund_key(payment_intent_id, refund_id)}:failed"


def dispute_key(payment_intent_id: str, dispute_id: str, step: Literal["opened", "won"]) -> str:
    return f"stripe:{payment_intent_id}:dispute:{dispute_id}:{step}"


# ----------------------------------------------------------------------------- checkout
class CheckoutCreate(Resource):
    package: str | None = Field(
        default=None, description="A package id from GET /v1/credits/packages, or 'custom'."
    )
    amount_cents: int | None = Field(
        default=None, description="For a custom amount: USD cents, within the custom range."
    )
    success_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Where Stripe sends the buyer after paying (default: a page of ours). "
        "Credits never come from this redirect: they come from Stripe's signed webhook.",
    )
    cancel_url: str | None = Field(default=None, max_length=2000)
    save_card: bool = Field(
        default=False,
        description="Save the card for off-session payments (auto-reload).",
    )

    @field_validator("success_url", "cancel_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value


class CheckoutSession(BaseModel):
    object: Literal["checkout_session"] = "checkout_session"
    id: str = Field(description="Stripe's Checkout Session id (cs_…).")
    url: str = Field(description="Send the buyer here to pay.")
    package: str
    amount_cents: int
    credits: Credits = Field(description="Every credit the payment will add, bonus included.")
    bonus_credits: Credits
    expires_at: datetime | None = None


# ----------------------------------------------------------------------------- Stripe objects
PaymentStatus = Literal[
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "canceled",
    "succeeded",
]


class StripePayment(BaseModel):
    """A PaymentIntent, as far as the platform reads it."""

    id: str
    status: str
    amount: int
    amount_received: int = 0
    currency: str = "usd"
    customer: str | None = None
    payment_method: str | None = None
    latest_charge: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    created: int = 0
    # Off-session failures: Stripe's error code and decline code.
    failure_code: str | None = None
    decline_code: str | None = None

    @property
    def account_id(self) -> str | None:
        return self.metadata.get(META_ACCOUNT) or None


class StripeCharge(BaseModel):
    id: str
    payment_intent: str | None = None
    amount: int
    amount_refunded: int = 0
    currency: str = "usd"
    status: str = "succeeded"
    disputed: bool = False
    created: int = 0


class StripeRefund(BaseModel):
    id: str
    amount: int
    status: str
    charge: str | None = None
    payment_intent: str | None = None
    created: int = 0


class StripeDispute(BaseModel):
    id: str
    amount: int
    status: str
    charge: str | None = None
    payment_intent: str | None = None
    created: int = 0

    @property
    def won(self) -> bool:
        return self.status == "won"


class StripeCustomer(BaseModel):
    id: str
    email: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class SavedCard(BaseModel):
    id: str
    brand: str | None = None
    last4: str | None = None


# ----------------------------------------------------------------------------- our records
PaymentState = Literal["succeeded", "partially_refunded", "refunded", "disputed"]


class Payment(BaseModel):
    """A Stripe payment that bought credits, as the account sees it (GET /v1/credits/payments)."""

    object: Literal["payment"] = "payment"
    id: str = Field(description="Stripe's PaymentIntent id (pi_…).")
    status: PaymentState = "succeeded"
    package: str
    amount_cents: int
    credits: Credits = Field(description="Every credit it added, bonus included.")
    bonus_credits: Credits
    refunded_cents: int = 0
    disputed_cents: int = 0
    created_at: datetime
    auto_reload: bool = Field(default=False, description="Charged off-session by auto-reload.")


class BillingJob(BaseModel):
    """One SQS message of the billing worker: apply this stored Stripe event, or charge this
    auto-reload."""

    event_id: str | None = None
    reload: ReloadJob | None = None

    @model_validator(mode="after")
    def _one(self) -> BillingJob:
        if (self.event_id is None) == (self.reload is None):
            raise ValueError("a billing job names an event_id or a reload")
        return self
