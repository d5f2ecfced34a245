"""The Twilio adapter's error mapping and search translation, without any network."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.response import Response

from talkturo.carrier.base import (
    CarrierError,
    CarrierNotConfigured,
    InvalidPhoneNumber,
    NumberNotAvailable,
)
from talkturo.carrier.twilio import (
    TwilioCarrier,
    _BaseUrlHttpClient,
    carrier_error,
    contains_pattern,
)
from talkturo.domain.telephony import NumberSearch


def _rest(status: int, code: int | None, message: str = "boom") -> TwilioRestException:
    return TwilioRestException(status, "https://api.twilio.com/x", message, code)


@pytest.mark.parametrize(
    ("status", "code", "kind", "retryable", "param"),
    [
        (400, 21422, NumberNotAvailable, False, "phone_number"),
        (400, 21421, InvalidPhoneNumber, False, "phone_number"),
        (400, 21211, InvalidPhoneNumber, False, "to"),
        (400, 21214, InvalidPhoneNumber, False, "to"),
        (401, 20003, CarrierError, False, None),
        (404, 20404, CarrierError, False, None),
        (429, 20429, CarrierError, True, None),
        (503, 20500, CarrierError, True, None),
        (400, 21220, CarrierError, False, None),
    ],
)
def test_twilio_errors_map_to_domain_errors(
    status: int, code: int, kind: type[CarrierError], retryable: bool, param: str | None
) -> None:
    error = carrier_error(_rest(status, code))

    assert type(error) is kind
    assert error.carrier_code == code
    assert error.retryable is retryable
    assert error.param == param


SECRET_DETAIL = "Account AC0123 is suspended; see https://internal.example/ticket/42"


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, 21422), (400, 21421), (400, 21211), (401, 20003), (429, 20429), (503, 20500), (400, 1)],
)
def test_the_carriers_words_stay_out_of_the_message(status: int, code: int) -> None:
    error = carrier_error(_rest(status, code, SECRET_DETAIL))

    assert SECRET_DETAIL not in error.message and "AC0123" not in error.message
    assert error.detail == SECRET_DETAIL


def test_the_carriers_words_go_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    class _Refuses:
        def __getattr__(self, name: str) -> Any:
            raise _rest(400, 21452, SECRET_DETAIL)

    carrier = TwilioCarrier("AC" + "0" * 32, "token", api_base_url="http://127.0.0.1:9")
    carrier._client = _Refuses()  # type: ignore[assignment]

    with pytest.raises(CarrierError) as failed:
        carrier.release_number("PN" + "0" * 32)
    assert SECRET_DETAIL not in failed.value.message
    assert SECRET_DETAIL in caplog.text


def test_a_failed_list_page_is_read_for_its_twilio_code() -> None:
    body = '{"code": 20003, "message": "Authenticate", "more_info": "x", "status": 401}'
    error = carrier_error(TwilioException("Unable to fetch page", Response(401, body)))

    assert error.carrier_code == 20003
    assert not error.retryable


def test_transport_failures_are_retryable_carrier_errors() -> None:
    error = carrier_error(requests.ConnectionError("refused"))
    assert isinstance(error, CarrierError)
    assert error.retryable


class _Boom:
    def __getattr__(self, name: str) -> Any:
        raise _rest(429, 20429, "Too Many Requests")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _rest(429, 20429, "Too Many Requests")


def test_no_sdk_exception_escapes_the_adapter() -> None:
    carrier = TwilioCarrier("AC" + "0" * 32, "token", api_base_url="http://127.0.0.1:9")
    carrier._client = _Boom()  # type: ignore[assignment]

    with pytest.raises(CarrierError) as failed:
        carrier.search_numbers(NumberSearch(country="US"))
    assert failed.value.retryable
    for action in (
        lambda: carrier.buy_number("+14155550100", voice_url="u", status_callback_url="s"),
        lambda: carrier.release_number("PN" + "0" * 32),
        lambda: carrier.hang_up("CA" + "0" * 32),
        lambda: carrier.redirect_call("CA" + "0" * 32, "<Response/>"),
    ):
        with pytest.raises(CarrierError):
            action()


def test_the_repr_never_shows_the_token() -> None:
    carrier = TwilioCarrier("AC" + "1" * 32, "super-secret-token")
    assert "super-secret-token" not in repr(carrier)


def test_the_http_client_rewrites_only_twilios_api_host(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def send(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        seen.append(url)
        return Response(200, "{}")

    monkeypatch.setattr("twilio.http.http_client.TwilioHttpClient.request", send)
    client = _BaseUrlHttpClient("http://127.0.0.1:8020/")
    client.request("GET", "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json")
    client.request("GET", "https://example.com/other")

    assert seen == [
        "http://127.0.0.1:8020/2010-04-01/Accounts/AC1/Calls.json",
        "https://example.com/other",
    ]


@pytest.mark.parametrize(
    ("pattern", "number", "matches"),
    [
        ("415", "14155550100", True),
        ("+1415", "14155550100", True),
        ("+1415", "12124155555", False),
        ("55*01", "14155550100", True),
        ("0100$", "14155550100", True),
        ("0101$", "14155550100", False),
        ("JKL", "14155550100", True),  # J, K and L are 5 on the keypad
        ("1JJJ", "14155550100", True),
        ("4JJ", "14155550100", False),
        ("*00$", "14155550100", True),
    ],
)
def test_contains_patterns_follow_twilios_rules(pattern: str, number: str, matches: bool) -> None:
    assert bool(contains_pattern(pattern).search(number)) is matches


def test_get_carrier_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from talkturo import config
    from talkturo.carrier import factory

    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    config.get_settings.cache_clear()
    factory.reset()
    try:
        with pytest.raises(CarrierNotConfigured):
            factory.get_carrier()
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "2" * 32)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "t0ken")
        monkeypatch.setenv("TWILIO_API_BASE_URL", "http://127.0.0.1:8020")
        config.get_settings.cache_clear()
        carrier = factory.get_carrier()
        assert carrier is factory.get_carrier()
        assert isinstance(carrier, TwilioCarrier)
        assert carrier.api_base_url == "http://127.0.0.1:8020"
        assert "t0ken" not in repr(config.get_settings())
    finally:
        factory.reset()
        config.get_settings.cache_clear()


def test_get_carrier_reads_the_secret_on_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    from talkturo import config
    from talkturo.carrier import factory

    asked: list[tuple[str, Any]] = []

    def get_secret(name: str, **options: Any) -> dict[str, str]:
        asked.append((name, options))
        return {"account_sid": "AC" + "3" * 32, "auth_token": "from-secrets-manager"}

    monkeypatch.setattr("aws_lambda_powertools.utilities.parameters.get_secret", get_secret)
    monkeypatch.setenv("TWILIO_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:twilio")
    monkeypatch.delenv("TWILIO_API_BASE_URL", raising=False)
    config.get_settings.cache_clear()
    factory.reset()
    try:
        carrier = factory.get_carrier()
        assert isinstance(carrier, TwilioCarrier)
        assert carrier.account_sid == "AC" + "3" * 32
        assert asked[0][0].endswith(":secret:twilio")
        assert asked[0][1]["transform"] == "json"
        assert asked[0][1]["max_age"] > 0
    finally:
        factory.reset()
        config.get_settings.cache_clear()
