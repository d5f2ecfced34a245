"""What a live call needs to know before the first word: the call record, its assistant, the
contact and company it is with, and the prompt variables filled for them (SPEC §2).

`load_context` reads the store (blocking: run it in a worker thread). `render` fills
`{{contact.first_name}}`, `{{contact.custom.budget}}`, `{{company.name}}`, `{{call.date}}` …;
a variable with no value becomes an empty string, so a prompt never shows braces to the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from talkturo.domain.assistants import (
    COMPANY_FIELDS,
    CONTACT_FIELDS,
    DEFAULT_AI_DISCLOSURE,
    AssistantRecord,
    estimate_of,
)
from talkturo.domain.calls import CallRecord, TranscriptMessage
from talkturo.domain.catalog import get_catalog
from talkturo.domain.common import utcnow
from talkturo.domain.companies import Company
from talkturo.domain.contacts import Contact

_VARIABLE_WITH_SPACE = re.compile(r"([ \t]*)\{\{\s*([^{}]*?)\s*\}\}")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


@dataclass
class CallContext:
    account_id: str
    account_name: str
    call: CallRecord
    assistant: AssistantRecord
    contact: Contact | None = None
    company: Company | None = None
    campaign_name: str | None = None
    # Whether the call's campaign asks for AI disclosure; campaigns do by default.
    ai_disclosure: bool = True
    timezone: str = "UTC"
    earlier_transcript: list[TranscriptMessage] = field(default_factory=list)
    # The recording so far, when this stream continues the call (a transfer came back).
    earlier_recording: bytes | None = None
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def rate_per_minute(self) -> Decimal:
        if self.call.is_test:  # metered as test minutes: the meter draws nothing
            return Decimal(0)
        return estimate_of(self.assistant, get_catalog()).total

    def fill_variables(self, now: datetime | None = None) -> None:
        values: dict[str, str] = {"account.name": self.account_name}
        contact, company = self.contact, self.company
        for name in CONTACT_FIELDS:
            value: Any = None
            if contact is not None:
                if name == "full_name":
                    value = " ".join(p for p in (contact.first_name, contact.last_name) if p)
                else:
                    value = getattr(contact, name, None)
            values[f"contact.{name}"] = _text(value)
        if contact is not None:
            for key, value in contact.custom.items():
                values[f"contact.custom.{key}"] = _text(value)
        for name in COMPANY_FIELDS:
            values[f"company.{name}"] = _text(getattr(company, name, None) if company else None)
        if company is not None:
            for key, value in company.custom.items():
                values[f"company.custom.{key}"] = _text(value)
        values["campaign.name"] = self.campaign_name or ""
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        local = (now or utcnow()).astimezone(zone)
        values.update(
            {
                "call.direction": self.call.direction,
                "call.from": self.call.from_number,
                "call.to": self.call.to_number,
                "call.date": local.strftime("%A, %d %B %Y"),
                "call.time": local.strftime("%H:%M %Z"),
            }
        )
        self.variables = values

    def render(self, text: str) -> str:
        def fill(match: re.Match[str]) -> str:
            value = self.variables.get(match.group(2), "")
            # An empty variable takes the space before it along: no "Hello , …" left behind.
            return match.group(1) + value if value else ""

        return _VARIABLE_WITH_SPACE.sub(fill, text).strip()

    @property
    def platform_number(self) -> str:
        """The platform's own number on this call (the caller ID, or the number dialled)."""
        return self.call.from_number if self.call.direction == "outbound" else self.call.to_number

    @property
    def customer_number(self) -> str:
        return self.call.to_number if self.call.direction == "outbound" else self.call.from_number


def disclosure_for(
    call: CallRecord, message: str = DEFAULT_AI_DISCLOSURE, *, enabled: bool = True
) -> str | None:
    """The AI disclosure that opens the first message of `call`, if it gets one: campaign calls
    disclose (on by default for every campaign; `enabled` is the campaign's own choice), other
    calls do not."""
    return message if call.campaign_id and enabled else None


def load_context(account_id: str, call_id: str) -> CallContext:
    from talkturo.errors import NotFound
    from talkturo.services import accounts, assistants, calls
    from talkturo.store import companies as company_store
    from talkturo.store import contacts as contact_store

    call = calls.get_record(account_id, call_id)
    assistant = assistants.get_record(account_id, call.assistant_id)
    account = accounts.get_account(account_id)
    contact = company = None
    if call.contact_id:
        try:
            contact = contact_store.get(account_id, call.contact_id)
        except NotFound:
            contact = None
    company_id = call.company_id or (contact.company_id if contact else None)
    if company_id:
        try:
            company = company_store.get(account_id, company_id)
        except NotFound:
            company = None
    campaign_name, disclosure = None, True
    if call.campaign_id:
        from talkturo.store import campaigns as campaign_store

        try:
            campaign, _ = campaign_store.get(account_id, call.campaign_id)
            campaign_name, disclosure = campaign.name, campaign.ai_disclosure
        except NotFound:
            pass
    context = CallContext(
        account_id=account_id,
        campaign_name=campaign_name,
        ai_disclosure=disclosure,
        account_name=account.name,
        call=call,
        assistant=assistant,
        contact=contact,
        company=company,
        timezone=(contact.timezone if contact and contact.timezone else account.default_timezone),
        earlier_transcript=calls.get_transcript_messages(account_id, call_id),
    )
    if context.earlier_transcript and assistant.telephony.recording_enabled:
        context.earlier_recording = calls.get_recording_wav(account_id, call_id)
    context.fill_variables()
    return context
