"""The pure rules of buying credits: packages, what a payment buys, pro rata shares, and the
simulator's reading of the SDK's form encoding."""

from __future__ import annotations

from decimal import Decimal

import pytest

from talkturo.domain import billing
from talkturo.local.stripe_sim.forms import decode


def test_the_package_file_gives_the_seeds_prices_and_bonuses() -> None:
    packages = billing.get_packages()
    assert [(p.id, p.amount_cents, p.credits, p.bonus_credits) for p in packages.packages] == [
        ("pkg_10", 1000, Decimal(20), Decimal(0)),
        ("pkg_50", 5000, Decimal(105), Decimal(5)),
        ("pkg_100", 10000, Decimal(220), Decimal(20)),
        ("pkg_500", 50000, Decimal(1150), Decimal(150)),
    ]


def test_a_package_below_the_base_rate_is_refused_at_load() -> None:
    text = """
currency: usd
base_credits_per_dollar: 2
custom: { min_cents: 1000, max_cents: 5000 }
packages:
  - { id: cheap, name: cheap, amount_cents: 1000, credits: 19 }
"""
    with pytest.raises(ValueError, match="less than the base rate"):
        billing.load_packages(text)


def test_what_a_checkout_buys() -> None:
    assert billing.purchase_of("pkg_50", None).model_dump() == {
        "package": "pkg_50",
        "amount_cents": 5000,
        "credits": Decimal(100),
        "bonus": Decimal(5),
    }
    custom = billing.purchase_of("custom", 1234)
    assert (custom.credits, custom.bonus, custom.total) == (Decimal("24.68"), 0, Decimal("24.68"))
    for package, amount, field in [
        ("nope", None, "package"),
        (None, None, "amount_cents"),
        ("custom", 999, "amount_cents"),
        ("pkg_10", 1500, "amount_cents"),
    ]:
        with pytest.raises(ValueError, match=f"^{field}: "):
            billing.purchase_of(package, amount)


def test_a_payment_buys_only_what_its_package_says() -> None:
    metadata = billing.purchase_of("pkg_100", None).metadata("acct_1")
    assert billing.purchase_from_payment(10000, "usd", metadata).total == Decimal(220)
    with pytest.raises(ValueError, match="does not match"):
        billing.purchase_from_payment(1000, "usd", metadata)
    with pytest.raises(ValueError, match="eur"):
        billing.purchase_from_payment(10000, "eur", metadata)
    with pytest.raises(ValueError, match="states"):
        billing.purchase_from_payment(10000, "usd", {**metadata, "talkturo_credits": "9999"})
    with pytest.raises(ValueError, match="no package"):
        billing.purchase_from_payment(10000, "usd", {})


def test_refund_shares_are_pro_rata_bonus_included_and_never_more_than_granted() -> None:
    assert billing.pro_rata(Decimal(220), 2500, 10000) == Decimal(55)
    assert billing.pro_rata(Decimal(105), 1000, 5000) == Decimal(21)
    assert billing.pro_rata(Decimal(105), 9999999, 5000) == Decimal(105)
    assert billing.pro_rata(Decimal(105), 0, 5000) == 0
    # Four partial refunds of a quarter add up to the whole
    assert sum(billing.pro_rata(Decimal(1150), 12500, 50000) for _ in range(4)) == Decimal(1150)


def test_each_payment_has_its_own_range_of_ledger_keys() -> None:
    keys = [
        billing.purchase_key("pi_1"),
        billing.bonus_key("pi_1"),
        billing.refund_key("pi_1", "re_1"),
        billing.dispute_key("pi_1", "dp_1", "opened"),
        billing.dispute_key("pi_1", "dp_1", "won"),
    ]
    assert len(set(keys)) == 5 and all(k.startswith("stripe:pi_1:") for k in keys)


def test_the_simulator_reads_the_sdks_brackets_and_indexes() -> None:
    text = (
        "mode=payment&line_items[0][quantity]=1&line_items[0][price_data][unit_amount]=5000"
        "&payment_intent_data[metadata][talkturo_account]=acct_1&created[gte]=10"
        "&expand[0]=a&expand[1]=b&off_session=true"
    )
    assert decode(text) == {
        "mode": "payment",
        "line_items": [{"quantity": "1", "price_data": {"unit_amount": "5000"}}],
        "payment_intent_data": {"metadata": {"talkturo_account": "acct_1"}},
        "created": {"gte": "10"},
        "expand": ["a", "b"],
        "off_session": "true",
    }
