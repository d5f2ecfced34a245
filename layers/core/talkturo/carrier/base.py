"""What the platform needs from a carrier, and the errors a carrier call can end in."""

from __future__ import annotations

from typing import Protocol

from talkturo.domain.telephony import (
    AvailableNumber,
    CallRequest,
    NumberSearch,
    PlacedCall,
    ProvisionedNumber,
)
from talkturo.errors import TalkturoError


class CarrierError(TalkturoError):
    """The carrier refused or failed a request. `carrier_code` is the carrier's own error code.

    `message` is the platform's own sentence (API answers show it); `detail` is what the
    carrier said, for the log only: it can name accounts, SIDs or internal URLs.
    """

    status = 502
    type = "carrier_error"
    code = "carrier_error"

    def __init__(
        self,
        message: str,
        *,
        carrier_code: int | None = None,
        retryable: bool = False,
        param: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.carrier_code = carrier_code
        self.retryable = retryable
        self.detail = detail


class NumberNotAvailable(CarrierError):
    """The number was taken (or never offered) by the time it was bought."""

    status = 409
    code = "number_not_available"


class InvalidPhoneNumber(CarrierError):
    """The carrier refuses the number itself: not a valid, reachable or callable destination."""

    status = 422
    code = "invalid_phone_number"


class CarrierNotConfigured(CarrierError):
    """No carrier credentials are configured (settings or Secrets Manager)."""

    status = 503
    code = "carrier_not_configured"


class Carrier(Protocol):
    def search_numbers(self, search: NumberSearch) -> list[AvailableNumber]: ...

    def buy_number(
        self, phone_number: str, *, voice_url: str, status_callback_url: str
    ) -> ProvisionedNumber: ...

    def release_number(self, carrier_sid: str) -> None:
        """Give the number back. Releasing a number already released is not an error."""

    def place_call(self, call: CallRequest) -> PlacedCall: ...

    def hang_up(self, carrier_sid: str) -> None:
        """End a live call. Hanging up a call that already ended is not an error."""

    def redirect_call(self, carrier_sid: str, twiml: str) -> None:
        """Replace what a live call is doing with new TwiML (transfers use it)."""
