"""The carrier simulator's pieces that need no network: inventory and webhook signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType
from twilio.request_validator import RequestValidator

from talkturo.domain.telephony import COUNTRIES
from talkturo.local.carrier_sim.inventory import build_inventory
from talkturo.local.carrier_sim.network import Network

TOKEN = "12345678901234567890123456789012"


def test_the_inventory_is_deterministic_and_unique() -> None:
    first = [n.phone_number for n in build_inventory()]
    assert first == [n.phone_number for n in build_inventory()]
    assert len(first) == len(set(first))
    assert first != [n.phone_number for n in build_inventory(seed=7)]


@pytest.mark.parametrize("country", COUNTRIES)
@pytest.mark.parametrize("kind", ["local", "toll_free"])
def test_every_offered_number_is_valid_for_its_country_and_type(country: str, kind: str) -> None:
    offered = [n for n in build_inventory() if n.iso_country == country and n.type == kind]
    assert len(offered) >= 10
    wanted = (
        {PhoneNumberType.TOLL_FREE}
        if kind == "toll_free"
        else {PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
    )
    for number in offered:
        parsed = phonenumbers.parse(number.phone_number, None)
        assert phonenumbers.is_valid_number_for_region(parsed, country), number
        assert phonenumbers.number_type(parsed) in wanted, number
        assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == (
            number.phone_number
        )
        assert number.phone_number[1:].startswith(str(parsed.country_code) + number.area_code), (
            number
        )


def test_north_american_numbers_carry_area_codes_and_places() -> None:
    us = [n for n in build_inventory() if n.iso_country == "US" and n.type == "local"]
    assert {n.area_code for n in us} >= {"212", "415"}
    assert all(n.region and n.locality and n.lata for n in us)
    toll_free = {n.area_code for n in build_inventory() if n.type == "toll_free"}
    assert {"800", "833"} <= toll_free


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("https://example.com/webhooks/status", {"CallSid": "CA1", "CallStatus": "ringing"}),
        ("https://example.com:8443/prod/voice?x=1&y=2", {"To": "+14155550100", "From": "+1"}),
        ("http://127.0.0.1:8000/hooks", {}),
        ("https://example.com/a", {"Caller": "+4930123", "Called": "é ü"}),
    ],
)
def test_signatures_validate_with_the_sdk(url: str, params: dict[str, str]) -> None:
    network = Network("AC" + "0" * 32, TOKEN)
    signature = network.signature(url, params)
    validator = RequestValidator(TOKEN)

    assert validator.validate(url, params, signature)
    assert not RequestValidator("another-token").validate(url, params, signature)
    if params:
        tampered = {**params, next(iter(params)): "tampered"}
        assert not validator.validate(url, tampered, signature)
    assert not validator.validate(url + "extra", params, signature)


def test_the_signature_is_twilios_documented_algorithm() -> None:
    """HMAC-SHA1 (key: auth token) over the full URL followed by each POST parameter's name
    and value, sorted by name; base64. Computed here independently of the SDK."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "To": "+18005551212",
        "CallSid": "CA1234567890ABCDE",
        "From": "+12349013030",
        "Digits": "1234",
        "Caller": "+12349013030",
    }
    payload = url + "".join(name + params[name] for name in sorted(params))
    expected = base64.b64encode(
        hmac.new(b"12345", payload.encode(), hashlib.sha1).digest()
    ).decode()

    assert Network("AC" + "0" * 32, "12345").signature(url, params) == expected
