"""The carrier's side of telephony in the domain's own words: numbers on offer, numbers held,
calls placed. The carrier adapter (talkturo.carrier) speaks these types; nothing above it sees
the carrier's SDK.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

Country = Literal["AE", "US", "CA", "DE", "AT", "CH"]
COUNTRIES: tuple[str, ...] = ("AE", "US", "CA", "DE", "AT", "CH")
NumberType = Literal["local", "toll_free"]


class NumberSearch(BaseModel):
    country: Country
    type: NumberType = "local"
    area_code: str | None = Field(default=None, pattern=r"^\d{2,5}$")
    contains: str | None = Field(
        default=None,
        pattern=r"^[0-9A-Za-z*]{1,16}$",
        description="Digits (or letters, as on a keypad) the number must contain; * is any digit.",
    )
    limit: int = Field(default=20, ge=1, le=50)


class AvailableNumber(BaseModel):
    """A number the carrier offers now (prices are added by the platform, from its rate data)."""

    phone_number: str = Field(description="E.164")
    friendly_name: str
    country: str
    type: NumberType
    locality: str | None = None
    region: str | None = None
    voice: bool = True
    sms: bool = False


class ProvisionedNumber(BaseModel):
    """A number the account now holds at the carrier."""

    carrier_sid: str
    phone_number: str


class CallRequest(BaseModel):
    """An outbound call as the carrier must place it."""

    to: str = Field(description="E.164")
    from_: str = Field(description="E.164 caller ID; a number the platform holds")
    answer_url: str | None = Field(
        default=None, description="Where the carrier fetches TwiML once the call connects"
    )
    twiml: str | None = Field(
        default=None,
        description="TwiML the carrier runs once the call connects, instead of fetching "
        "answer_url (a transfer's supervisor leg)",
    )
    status_callback_url: str
    machine_detection: bool = True
    machine_detection_mode: Literal["Enable", "DetectMessageEnd"] = Field(
        default="Enable",
        description="Enable: answer as soon as human or machine is known; DetectMessageEnd: "
        "wait for the greeting's end (to leave a message after the beep)",
    )
    amd_callback_url: str | None = Field(
        default=None,
        description="Where the asynchronous answering-machine result is sent "
        "(default: status_callback_url)",
    )
    timeout_seconds: int = Field(default=30, ge=5, le=600, description="Ring time before no-answer")
    send_digits: str | None = Field(
        default=None,
        pattern=r"^[0-9#*w]{1,32}$",
        description="Keys dialled once the call is answered (an extension); w waits half a second",
    )

    @model_validator(mode="after")
    def _one_instruction(self) -> CallRequest:
        if (self.answer_url is None) == (self.twiml is None):
            raise ValueError("give exactly one of answer_url and twiml")
        return self


class PlacedCall(BaseModel):
    carrier_sid: str
    status: str
