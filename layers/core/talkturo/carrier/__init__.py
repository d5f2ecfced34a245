"""The carrier adapter: everything the platform asks of the phone network.

Only this package talks to the carrier (Twilio, through its official SDK). Callers use the
`Carrier` protocol and the domain's telephony types, and get the adapter from `get_carrier()`.
"""

from talkturo.carrier.base import (
    Carrier,
    CarrierError,
    CarrierNotConfigured,
    InvalidPhoneNumber,
    NumberNotAvailable,
)
from talkturo.carrier.factory import get_carrier

__all__ = [
    "Carrier",
    "CarrierError",
    "CarrierNotConfigured",
    "InvalidPhoneNumber",
    "NumberNotAvailable",
    "get_carrier",
]
