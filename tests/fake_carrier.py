"""A carrier test double: the Carrier protocol in memory, recording what it was asked."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

from talkturo.carrier.base import Carrier, CarrierError, NumberNotAvailable
from talkturo.domain.telephony import (
    AvailableNumber,
    CallRequest,
    NumberSearch,
    PlacedCall,
    ProvisionedNumber,
)

OFFER = {
    ("US", "local"): ["+14155550140", "+14155550141", "+14155550142", "+12125550143"],
    ("US", "toll_free"): ["+18885550144"],
    ("DE", "local"): ["+493012345670"],
}


@dataclass
class FakeCarrier:
    """Sells the numbers of OFFER; `fail_next` makes the next buy fail with that error."""

    bought: list[tuple[str, str, str]] = field(default_factory=list)  # number, voice, status
    released: list[str] = field(default_factory=list)
    searches: list[NumberSearch] = field(default_factory=list)
    fail_next: CarrierError | None = None
    placed: list[CallRequest] = field(default_factory=list)
    fail_next_call: CarrierError | None = None
    _sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def search_numbers(self, search: NumberSearch) -> list[AvailableNumber]:
        self.searches.append(search)
        numbers = OFFER.get((search.country, search.type), [])
        if search.area_code:
            numbers = [n for n in numbers if n[2:].startswith(search.area_code)]
        if search.contains:
            numbers = [n for n in numbers if search.contains in n]
        return [
            AvailableNumber(
                phone_number=n, friendly_name=n, country=search.country, type=search.type
            )
            for n in numbers[: search.limit]
        ]

    def buy_number(
        self, phone_number: str, *, voice_url: str, status_callback_url: str
    ) -> ProvisionedNumber:
        with self._lock:
            if self.fail_next is not None:
                error, self.fail_next = self.fail_next, None
                raise error
            if any(b[0] == phone_number for b in self.bought):
                raise NumberNotAvailable("the number is not available", carrier_code=21422)
            self.bought.append((phone_number, voice_url, status_callback_url))
            return ProvisionedNumber(
                carrier_sid=f"PN{next(self._sids):032d}", phone_number=phone_number
            )

    def release_number(self, carrier_sid: str) -> None:
        self.released.append(carrier_sid)

    def place_call(self, call: CallRequest) -> PlacedCall:
        with self._lock:
            if self.fail_next_call is not None:
                error, self.fail_next_call = self.fail_next_call, None
                raise error
            self.placed.append(call)
            return PlacedCall(carrier_sid=f"CA{next(self._sids):032d}", status="queued")

    def hang_up(self, carrier_sid: str) -> None:
        raise NotImplementedError

    def redirect_call(self, carrier_sid: str, twiml: str) -> None:
        raise NotImplementedError


def _conforms(carrier: FakeCarrier) -> Carrier:
    return carrier  # mypy checks that the double implements the protocol
