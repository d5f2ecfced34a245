"""Dialing rules: the one check every outbound call, transfer and campaign dial passes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from talkturo.domain.dialing import (
    COUNTRY_NOT_ALLOWED,
    EXTENSION_REFUSED,
    HIGH_RISK,
    INVALID,
    PREMIUM_RATE,
    SELF_CALL,
    Destination,
    DialingSettings,
    check_destination,
    get_dialing_rules,
    load_dialing_rules,
    view_of,
)
from talkturo.errors import InvalidRequest

CALLER_ID = "+14155550140"  # the account's US number, the caller ID
OTHER_OWNED = "+14155550141"  # another number the account holds
CALLEE = "+14155550199"


def check(to: str, **options: Any) -> Destination:
    arguments: dict[str, Any] = {
        "caller_id": CALLER_ID,
        "account_numbers": [CALLER_ID, OTHER_OWNED],
        "allowed_countries": ["US"],
        "rules": get_dialing_rules(),
    }
    return check_destination(to, **{**arguments, **options})


def refusal(to: str, **options: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        check(to, **options)
    return caught.value


def test_an_ordinary_number_passes_as_e164() -> None:
    assert check("(415) 555-0199") == Destination(number=CALLEE, country="US")


@pytest.mark.parametrize(
    ("to", "code", "rule"),
    [
        ("+1 900 234 5678", PREMIUM_RATE, "premium_rate"),  # NANP pay-per-call
        ("+1 976 555 0123", PREMIUM_RATE, "premium_rate"),  # libphonenumber calls it invalid
        ("+882 1234 5678", HIGH_RISK, "high_risk"),  # international networks
        ("+883 5100 0123 4567", HIGH_RISK, "high_risk"),
        ("+881 6 0000 0000", HIGH_RISK, "high_risk"),  # satellite
        ("+870 773 111 632", HIGH_RISK, "high_risk"),  # Inmarsat
        ("+53 5 123 4567", HIGH_RISK, "high_risk"),  # Cuba
        ("+1 876 555 0123", HIGH_RISK, "high_risk"),  # Jamaica, one-ring scams
    ],
)
def test_premium_rate_and_high_risk_prefixes_are_refused(to: str, code: str, rule: str) -> None:
    # Even where the account may call every country: prefixes are refused for everyone.
    error = refusal(to, allowed_countries=None)
    assert (error.status, error.code, error.param) == (422, code, "to_number")
    assert f"dialing rule {rule}" in error.message


@pytest.mark.parametrize(
    ("to", "kind"),
    [
        ("+44 909 879 0000", "premium-rate"),  # UK 09: premium rate
        ("+44 871 234 5678", "premium-rate"),
        ("+43 810 123456", "shared-cost"),  # Austria 0810
        ("+33 8 91 12 34 56", "premium-rate"),
        ("+33 8 06 12 34 56", "uan"),
    ],
)
def test_premium_shared_cost_and_uan_number_types_are_refused(to: str, kind: str) -> None:
    error = refusal(to, allowed_countries=["GB", "FR", "AT"])
    assert error.code == PREMIUM_RATE
    assert f"is a {kind} number" in error.message


def test_uk_03_numbers_are_exempt_from_the_type_rule() -> None:
    # libphonenumber calls them UAN; they cost a geographic call.
    assert check("+44 300 123 4567", allowed_countries=["GB"]).number == "+443001234567"


def test_a_call_to_the_caller_id_or_another_owned_number_is_refused() -> None:
    own = refusal(CALLER_ID)
    assert (own.code, own.param) == (SELF_CALL, "to_number")
    assert "the caller ID" in own.message
    other = refusal("+1 415-555-0141", param="tools[0].config.destinations[1].number")
    assert (other.code, other.param) == (SELF_CALL, "tools[0].config.destinations[1].number")
    assert "a number of this account" in other.message


def test_a_country_the_account_may_not_call_is_refused() -> None:
    error = refusal("+49 30 901820")
    assert (error.code, error.param) == (COUNTRY_NOT_ALLOWED, "to_number")
    assert "in DE" in error.message and "call US" in error.message
    # With the country allowed, it passes.
    assert check("+49 30 901820", allowed_countries=["US", "DE"]).country == "DE"


def test_a_trial_numbers_account_calls_only_its_numbers_country() -> None:
    # A free account's only number is its trial number: its country is all it may call.
    trial = DialingSettings()
    countries = view_of(trial, ["CA"], get_dialing_rules()).allowed_countries
    assert countries == ["CA"]
    assert check("+1 604 555 0123", allowed_countries=countries).country == "CA"
    assert refusal(CALLEE, allowed_countries=countries).code == COUNTRY_NOT_ALLOWED


def test_an_admin_list_overrides_the_countries_of_the_numbers() -> None:
    override = DialingSettings(allowed_countries=["de", "AT"])
    view = view_of(override, ["US"], get_dialing_rules())
    assert (view.allowed_countries, view.countries_from) == (["AT", "DE"], "admin")
    assert check("+43 1 5124455", allowed_countries=view.allowed_countries).country == "AT"
    # The admin's list replaces the default: the account's own country is not added.
    assert refusal(CALLEE, allowed_countries=view.allowed_countries).code == COUNTRY_NOT_ALLOWED
    default = view_of(DialingSettings(), ["US", "DE", "US"], get_dialing_rules())
    assert (default.allowed_countries, default.countries_from) == (["DE", "US"], "numbers")


def test_an_admin_list_must_name_countries() -> None:
    with pytest.raises(ValidationError, match="alpha-2"):
        DialingSettings(allowed_countries=["XX"])


@pytest.mark.parametrize(
    "to",
    [
        "+14155550199 ext9",
        "+1 415 555 0199 ext. 9",
        "+14155550199x9",
        "+14155550199;ext=9",
        "+14155550199#9",
    ],
)
def test_an_extension_is_dialled_as_dtmf_after_a_pause(to: str) -> None:
    assert check(to) == Destination(number=CALLEE, extension="9", country="US", send_digits="ww9")


def test_an_extension_is_refused_when_the_account_says_so() -> None:
    error = refusal("+14155550199 ext 123", extensions="refuse")
    assert (error.code, error.param) == (EXTENSION_REFUSED, "to_number")
    assert "extensions is refuse" in error.message
    assert check(CALLEE, extensions="refuse").send_digits is None


@pytest.mark.parametrize("to", ["12", "", "not a number", "+1 415 555"])
def test_an_invalid_number_is_a_422_naming_the_field(to: str) -> None:
    error = refusal(to, param="contact_id")
    assert (error.status, error.code, error.param) == (422, INVALID, "contact_id")


def test_without_a_country_list_only_the_country_rule_is_skipped() -> None:
    assert check("+49 30 901820", allowed_countries=None).country == "DE"
    assert refusal(CALLER_ID, allowed_countries=None).code == SELF_CALL


def test_the_rules_file_refuses_bad_edits() -> None:
    assert load_dialing_rules("prefixes: []").prefixes == []
    with pytest.raises(ValidationError):
        load_dialing_rules("number_types: {EXPENSIVE: premium_rate}")
    with pytest.raises(ValidationError):
        load_dialing_rules("prefixes: [{prefix: '1900', rule: premium_rate, why: x}]")
    with pytest.raises(ValidationError):
        load_dialing_rules("prefixes: [{prefix: '+1900', rule: pricey, why: x}]")
    shipped = get_dialing_rules()
    assert all(p.why for p in shipped.prefixes)
    assert {"PREMIUM_RATE", "SHARED_COST", "UAN"} <= set(shipped.number_types)
