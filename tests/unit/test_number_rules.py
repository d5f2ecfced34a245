"""Phone numbers: the price data and the domain's rules (no network)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from talkturo.domain.numbers import (
    PhoneNumber,
    PhoneNumberBuy,
    assignable_problem,
    country_of,
    friendly_default,
    get_number_prices,
    is_toll_free,
    load_number_prices,
    trial_expiry,
)
from talkturo.domain.telephony import COUNTRIES

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_every_served_country_and_type_has_a_realistic_price() -> None:
    prices = get_number_prices()
    for country in COUNTRIES:
        for number_type in ("local", "toll_free"):
            price = prices.price(country, number_type)
            assert 50 <= price.monthly <= 20_000, (country, number_type)
            assert 0 <= price.setup <= 10_000
    assert prices.price("US", "local").monthly == 150
    assert get_number_prices() is prices  # read once, cached


def test_the_price_loader_refuses_bad_edits() -> None:
    good = "\n".join(
        f"{c}:\n  local: {{monthly: 100, setup: 0}}\n  toll_free: {{monthly: 200, setup: 0}}"
        for c in COUNTRIES
    )
    assert load_number_prices(good).price("DE", "toll_free").monthly == 200
    with pytest.raises(ValidationError):
        load_number_prices(good.replace("monthly: 100", "monthly: -1", 1))
    with pytest.raises(ValidationError):
        load_number_prices(good + "\nFR:\n  local: {monthly: 1, setup: 0}")
    with pytest.raises(ValidationError):
        load_number_prices(good.split("\nCA:")[0])
    with pytest.raises(LookupError):
        load_number_prices(good).price("FR", "local")


@pytest.mark.parametrize(
    ("number", "country", "toll_free"),
    [
        ("+14155550140", "US", False),
        ("+18885550144", "US", True),
        ("+16135550123", "CA", False),
        ("+493012345670", "DE", False),
        ("+4312345678", "AT", False),
        ("+41441234567", "CH", False),
        ("+97142345678", "AE", False),
        ("+33142685300", None, False),
        ("+999", None, False),
    ],
)
def test_country_and_type_of_a_number(number: str, country: str | None, toll_free: bool) -> None:
    assert country_of(number) == country
    assert is_toll_free(number) is toll_free


def test_friendly_default_and_trial_expiry() -> None:
    assert friendly_default("+14155550140") == "+1 415-555-0140"
    assert trial_expiry(NOW) == datetime(2025, 3, 6, 12, 0, tzinfo=UTC)


def test_buy_needs_e164() -> None:
    assert PhoneNumberBuy(phone_number="+14155550140").friendly_name is None
    for bad in ("4155550140", "+0123456789", "+1 415 555 0140", ""):
        with pytest.raises(ValidationError):
            PhoneNumberBuy(phone_number=bad)
    with pytest.raises(ValidationError):
        PhoneNumberBuy(phone_number="+14155550140", status="active")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("status", "assignable"),
    [
        ("active", True),
        ("purchasing", False),
        ("error", False),
        ("suspended", False),
        ("released", False),
    ],
)
def test_only_active_numbers_are_assignable(status: str, assignable: bool) -> None:
    number = PhoneNumber(
        id="pn_x",
        phone_number="+14155550140",
        country="US",
        type="local",
        friendly_name="x",
        status=status,  # type: ignore[arg-type]
        monthly_price_cents=150,
        setup_price_cents=0,
        created_at=NOW,
        updated_at=NOW,
    )
    problem = assignable_problem(number)
    assert (problem is None) is assignable
    if problem:
        assert status in problem or "provisioned" in problem
