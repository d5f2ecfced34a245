"""The credit ledger: every change of a balance is an entry; the balance is their sum."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from talkturo.domain.common import Credits, Resource, quantize_credits

EntryKind = Literal[
    "purchase", "bonus", "usage", "refund", "grant", "adjustment", "payment_refund", "dispute"
]

# The sign each kind must carry; adjustments go either way, and so do disputes (credits taken
# back when a payment is disputed, given back when the dispute is won) and payment refunds
# (a `payment_refund` takes back the credits of a payment Stripe refunded, and gives them back
# when that refund later fails). A `refund` gives credits back to the account (an operator's).
CREDITING: frozenset[str] = frozenset({"purchase", "bonus", "refund", "grant"})
DEBITING: frozenset[str] = frozenset({"usage"})

# No one entry moves more (a bound well inside what the ledger's decimals can hold exactly).
MAX_ENTRY_CREDITS = Decimal(1_000_000)


def bounded_credits(value: Decimal) -> Decimal:
    """`value` when it can be a ledger amount: finite, at most MAX_ENTRY_CREDITS either way."""
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if abs(value) > MAX_ENTRY_CREDITS:
        raise ValueError(
            f"must be between -{MAX_ENTRY_CREDITS:,} and {MAX_ENTRY_CREDITS:,} credits"
        )
    return value


class LedgerEntry(BaseModel):
    object: Literal["ledger_entry"] = "ledger_entry"
    id: str
    kind: EntryKind
    amount: Credits = Field(description="Signed: positive adds credits, negative draws them.")
    description: str = ""
    reference: str | None = Field(
        default=None, description="What caused it: a call id, a payment id, an operator note."
    )
    idempotency_key: str
    created_at: datetime


class Balance(BaseModel):
    object: Literal["balance"] = "balance"
    balance: Credits
    updated_at: datetime | None = None


class CreditGrant(Resource):
    """An operator's change to an account's credits (admin API)."""

    kind: Literal["grant", "refund", "adjustment"]
    amount: Decimal = Field(
        description="Credits, at most four decimal places and 1,000,000 either way; negative "
        "only for adjustments."
    )
    description: str = Field(default="", max_length=500)
    reference: str | None = Field(default=None, max_length=200)

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        bounded_credits(value)
        if value != quantize_credits(value):
            raise ValueError("credits have at most four decimal places")
        if value == 0:
            raise ValueError("must not be zero")
        if value < 0 and info.data.get("kind") in CREDITING:
            raise ValueError(f"a {info.data['kind']} must be positive")
        return value


# The base rate of SPEC §7: $1 buys 2 credits (packages add a bonus on top). What the platform
# charges in dollars (a number's rent) is charged in credits at this rate.
CREDITS_PER_USD = Decimal(2)


def credits_of_cents(cents: int) -> Decimal:
    """USD cents in credits at the base rate (150 cents → 3 credits)."""
    return quantize_credits(Decimal(cents) * CREDITS_PER_USD / Decimal(100))
