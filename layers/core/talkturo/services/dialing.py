"""Dialing rules applied to an account: the one check every outbound call, transfer and
campaign dial passes (`check`), the transfer destinations of an assistant's tools, and the
admin's override of the countries an account may call and of how it dials extensions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from talkturo.domain.assistant_tools import TransferCallTool
from talkturo.domain.dialing import (
    Destination,
    DialingSettings,
    DialingView,
    check_destination,
    effective_countries,
    get_dialing_rules,
    view_of,
)
from talkturo.domain.numbers import PhoneNumberRecord
from talkturo.store import dialing as store
from talkturo.store import numbers as number_store

# The numbers an account still holds (a call to one of them is a call to itself).
HELD = frozenset({"purchasing", "active", "suspended"})


@dataclass(frozen=True)
class AccountLines:
    """What the rules need to know of an account: its settings and its numbers."""

    settings: DialingSettings
    held: frozenset[str]
    active_countries: frozenset[str]

    def allowed_countries(self, *, without_numbers: bool = False) -> list[str] | None:
        """The countries it may call; None when the rule cannot apply yet (`without_numbers`:
        an account with no active number and no admin list is not judged on countries)."""
        unset = self.settings.allowed_countries is None
        if without_numbers and unset and not self.active_countries:
            return None
        return effective_countries(self.settings, self.active_countries)


def lines_of(account_id: str, numbers: Iterable[PhoneNumberRecord] | None = None) -> AccountLines:
    """The account's dialing settings and numbers (`numbers`: the account's, already read)."""
    held: set[str] = set()
    countries: set[str] = set()
    if numbers is None:
        numbers = [number for number, _ in number_store.all_of(account_id)]
    for number in numbers:
        if number.status in HELD:
            held.add(number.phone_number)
        if number.status == "active":
            countries.add(number.country)
    return AccountLines(store.get(account_id), frozenset(held), frozenset(countries))


def check(
    account_id: str,
    to: str,
    *,
    caller_id: str | None,
    param: str = "to_number",
    lines: AccountLines | None = None,
) -> Destination:
    """`to` as the carrier must dial it, or InvalidRequest (422) naming `param` and the rule.

    The check of every outbound call (POST /v1/calls), every transfer when it happens, and
    every campaign dial."""
    lines = lines or lines_of(account_id)
    return check_destination(
        to,
        caller_id=caller_id,
        account_numbers=lines.held,
        allowed_countries=lines.allowed_countries(),
        rules=get_dialing_rules(),
        extensions=lines.settings.extensions,
        param=param,
    )


def check_transfer_tools(account_id: str, tools: Iterable[object]) -> None:
    """The transfer destinations of an assistant's tools, as they are saved (param
    `tools[i].config.destinations[j].number`). An account without numbers yet is not judged
    on countries here; the transfer is checked again when it happens."""
    lines: AccountLines | None = None
    rules = get_dialing_rules()
    for index, tool in enumerate(tools):
        if not isinstance(tool, TransferCallTool):
            continue
        lines = lines or lines_of(account_id)
        for position, destination in enumerate(tool.config.destinations):
            check_destination(
                destination.number,
                caller_id=None,
                account_numbers=lines.held,
                allowed_countries=lines.allowed_countries(without_numbers=True),
                rules=rules,
                extensions=lines.settings.extensions,
                param=f"tools[{index}].config.destinations[{position}].number",
            )


def view(account_id: str) -> DialingView:
    lines = lines_of(account_id)
    return view_of(lines.settings, lines.active_countries, get_dialing_rules())


def set_settings(account_id: str, settings: DialingSettings) -> DialingView:
    """An admin's override: the countries the account may call, how it dials extensions."""
    store.put(account_id, settings)
    return view(account_id)
