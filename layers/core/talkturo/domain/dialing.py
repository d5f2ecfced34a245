"""Dialing rules: where an outbound call, a transfer or a campaign dial may go (SPEC §3).

Toll fraud is the classic telephony loss: calls pumped to premium-rate or high-cost numbers whose
holder shares the charge. So every destination passes one check, `check_destination`:

- premium-rate, shared-cost and UAN numbers (libphonenumber's number types) and the prefixes of
  data/dialing_rules.yaml (NANP 900/976, satellite and international networks, well-known
  revenue-share fraud destinations) are refused;
- the destination must be in a country the account may call: those of its own active numbers,
  unless an admin set the list;
- it must not be the caller ID or another number the account holds (a call to itself);
- an extension (`ext9`, `x9`, `;ext=9`, `#9`) is dialled as DTMF once the far end answers, or
  refused when the account's settings say so.

Each refusal is an InvalidRequest (422) naming the field in `param` and the rule in `code`.
Pure: the rules, the account's numbers and settings are given; no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from functools import lru_cache
from importlib.resources import files
from typing import Literal

import phonenumbers
import yaml
from pydantic import BaseModel, Field, field_validator

from talkturo.domain.common import Resource
from talkturo.domain.phones import DEFAULT_REGION, is_country
from talkturo.errors import InvalidRequest

Rule = Literal["premium_rate", "high_risk"]
ExtensionPolicy = Literal["dtmf", "refuse"]
CountriesFrom = Literal["numbers", "admin"]


class DestinationRefused(InvalidRequest):
    """A destination the dialing rules refuse: a 422 naming the field, one code per rule."""


class InvalidDestination(DestinationRefused):
    code = "invalid_phone_number"


class PremiumRateDestination(DestinationRefused):
    code = "destination_premium_rate"


class HighRiskDestination(DestinationRefused):
    code = "destination_high_risk"


class CountryNotAllowed(DestinationRefused):
    code = "destination_country_not_allowed"


class SelfCall(DestinationRefused):
    code = "destination_self_call"


class ExtensionRefused(DestinationRefused):
    code = "destination_extension_refused"


# The error code of each refusal (docs/calls.md and docs/errors.md list them).
INVALID = InvalidDestination.code
PREMIUM_RATE = PremiumRateDestination.code
HIGH_RISK = HighRiskDestination.code
COUNTRY_NOT_ALLOWED = CountryNotAllowed.code
SELF_CALL = SelfCall.code
EXTENSION_REFUSED = ExtensionRefused.code
RULE_ERRORS: dict[Rule, type[DestinationRefused]] = {
    "premium_rate": PremiumRateDestination,
    "high_risk": HighRiskDestination,
}
# Twilio's SendDigits takes at most 32 keys.
MAX_SEND_DIGITS = 32


class Prefix(BaseModel):
    prefix: str = Field(pattern=r"^\+[1-9][0-9]{0,7}$", description="E.164 digits it starts with")
    why: str = Field(min_length=1)


class RefusedPrefix(Prefix):
    rule: Rule


class DialingRules(BaseModel):
    """The platform's rules, as data (data/dialing_rules.yaml)."""

    extension_pause: str = Field(default="ww", pattern=r"^w{0,8}$")
    number_types: dict[str, Rule] = Field(default_factory=dict)
    type_exemptions: list[Prefix] = Field(default_factory=list)
    prefixes: list[RefusedPrefix] = Field(default_factory=list)

    @field_validator("number_types")
    @classmethod
    def _types(cls, value: dict[str, Rule]) -> dict[str, Rule]:
        unknown = [name for name in value if not hasattr(phonenumbers.PhoneNumberType, name)]
        if unknown:
            raise ValueError(f"not libphonenumber number types: {unknown}")
        return value

    def refused_types(self) -> dict[int, tuple[str, Rule]]:
        """libphonenumber's type values refused: (type name, rule)."""
        return {
            getattr(phonenumbers.PhoneNumberType, name): (name, rule)
            for name, rule in self.number_types.items()
        }

    def prefix_of(self, e164: str) -> RefusedPrefix | None:
        """The longest refused prefix the number starts with."""
        found = [p for p in self.prefixes if e164.startswith(p.prefix)]
        return max(found, key=lambda p: len(p.prefix)) if found else None


def load_dialing_rules(text: str) -> DialingRules:
    return DialingRules.model_validate(yaml.safe_load(text))


@lru_cache(maxsize=1)
def get_dialing_rules() -> DialingRules:
    """The rules shipped with the package, read once per process."""
    text = files("talkturo").joinpath("data/dialing_rules.yaml").read_text("utf-8")
    return load_dialing_rules(text)


# --------------------------------------------------------------------------- an account's settings


def _countries(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    codes = sorted({code.upper() for code in value})
    wrong = [code for code in codes if not is_country(code)]
    if wrong:
        raise ValueError(f"not ISO 3166-1 alpha-2 countries with phone numbers: {wrong}")
    return codes


class DialingSettings(Resource):
    """What an admin sets for one account (PUT /v1/admin/accounts/{id}/dialing)."""

    allowed_countries: list[str] | None = Field(
        default=None,
        max_length=250,
        description="ISO 3166-1 alpha-2 codes the account may call; null: the countries of "
        "its own active numbers.",
    )
    extensions: ExtensionPolicy = Field(
        default="dtmf",
        description="dtmf: an extension is dialled as DTMF after the answer; refuse: a "
        "destination with an extension is refused.",
    )

    @field_validator("allowed_countries")
    @classmethod
    def _allowed(cls, value: list[str] | None) -> list[str] | None:
        return _countries(value)


class DialingView(BaseModel):
    """The rules an account's calls pass (GET /v1/account/dialing)."""

    object: Literal["dialing_rules"] = "dialing_rules"
    allowed_countries: list[str] = Field(description="The countries the account may call now.")
    countries_from: CountriesFrom = Field(
        description="numbers: those of its active numbers (the default); admin: set by an admin."
    )
    extensions: ExtensionPolicy
    refused_number_types: list[str] = Field(description="libphonenumber's types, always refused.")
    refused_prefixes: list[RefusedPrefix]


def effective_countries(settings: DialingSettings, active_countries: Iterable[str]) -> list[str]:
    if settings.allowed_countries is not None:
        return list(settings.allowed_countries)
    return sorted(set(active_countries))


def view_of(
    settings: DialingSettings, active_countries: Iterable[str], rules: DialingRules
) -> DialingView:
    return DialingView(
        allowed_countries=effective_countries(settings, active_countries),
        countries_from="numbers" if settings.allowed_countries is None else "admin",
        extensions=settings.extensions,
        refused_number_types=sorted(rules.number_types),
        refused_prefixes=rules.prefixes,
    )


# --------------------------------------------------------------------------- the check


class Destination(BaseModel):
    """A destination that passed the rules."""

    number: str = Field(description="E.164, without the extension")
    extension: str | None = Field(default=None, description="Digits dialled after the answer")
    country: str | None = Field(default=None, description="ISO alpha-2; None: non-geographic")
    send_digits: str | None = Field(
        default=None, description="What the carrier dials after the answer (pause, extension)"
    )


def dtmf_of(extension: str | None, rules: DialingRules | None = None) -> str | None:
    """What the carrier dials once the far end answers: the pause, then the extension."""
    if not extension:
        return None
    return (rules or get_dialing_rules()).extension_pause + extension


def _refuse(param: str, error: type[DestinationRefused], message: str) -> DestinationRefused:
    return error(f"{param}: {message}", param=param)


def _parse(to: str, param: str) -> phonenumbers.PhoneNumber:
    try:
        # National forms are read as US numbers, as everywhere else in the API.
        return phonenumbers.parse(to.strip(), DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise _refuse(
            param,
            InvalidDestination,
            f"{to!r} is not a phone number; use E.164 such as +14155550123",
        ) from None


def e164_of(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_destination(
    to: str,
    *,
    caller_id: str | None,
    account_numbers: Iterable[str],
    allowed_countries: Collection[str] | None,
    rules: DialingRules,
    extensions: ExtensionPolicy = "dtmf",
    param: str = "to_number",
) -> Destination:
    """`to` as it may be dialled, or an InvalidRequest naming `param` and the rule broken.

    `allowed_countries` None skips the country rule (an assistant saved before the account
    holds any number: its transfers are checked again when they happen).
    """
    number = _parse(to, param)
    e164 = e164_of(number)
    # Prefixes first: libphonenumber calls some of them invalid (+1 976, +882 …).
    prefix = rules.prefix_of(e164)
    if prefix is not None:
        raise _refuse(
            param,
            RULE_ERRORS[prefix.rule],
            f"{e164} is refused by the dialing rule {prefix.rule} ({prefix.prefix}: {prefix.why})",
        )
    if not phonenumbers.is_valid_number(number):
        raise _refuse(param, InvalidDestination, f"{to} is not a valid phone number")
    refused = rules.refused_types().get(phonenumbers.number_type(number))
    exempt = any(e164.startswith(p.prefix) for p in rules.type_exemptions)
    if refused is not None and not exempt:
        kind, rule = refused
        raise _refuse(
            param,
            RULE_ERRORS[rule],
            f"{e164} is a {kind.lower().replace('_', '-')} number, refused by the dialing "
            f"rule {rule}",
        )
    if e164 == caller_id or e164 in set(account_numbers):
        raise _refuse(
            param,
            SelfCall,
            f"{e164} is "
            + ("the caller ID" if e164 == caller_id else "a number of this account")
            + "; the dialing rule self_call refuses calls to the account's own numbers",
        )
    region_code = phonenumbers.region_code_for_number(number)
    country = region_code if is_country(region_code or "") else None
    if allowed_countries is not None and country not in allowed_countries:
        allowed = ", ".join(sorted(allowed_countries)) or "none"
        raise _refuse(
            param,
            CountryNotAllowed,
            f"{e164} is in {country or 'no country'}; the dialing rule allowed_countries lets "
            f"this account call {allowed} (the countries of its own numbers, unless an admin "
            "set the list)",
        )
    extension = number.extension or None
    send_digits = None
    if extension is not None:
        if extensions == "refuse":
            raise _refuse(
                param,
                ExtensionRefused,
                f"{to} has an extension ({extension}); this account's dialing rule extensions "
                "is refuse: give the number alone",
            )
        send_digits = dtmf_of(extension, rules)
        if send_digits is None or len(send_digits) > MAX_SEND_DIGITS:
            raise _refuse(param, InvalidDestination, f"the extension of {to} is too long to dial")
    return Destination(number=e164, extension=extension, country=country, send_digits=send_digits)
