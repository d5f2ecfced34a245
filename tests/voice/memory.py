"""Calls held in memory: a CallContext without the store, and session services that record what
the session asked for instead of writing it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from talkturo.domain.assistants import config_for_create
from talkturo.domain.calls import CallEvent, CallRecord
from talkturo.domain.catalog import get_catalog
from talkturo.domain.common import utcnow
from talkturo.services.assistants import _new_record, _templates
from talkturo.voice.context import CallContext
from talkturo.voice.session import SessionServices


def memory_context(direction: str = "inbound", **changes: Any) -> CallContext:
    config = config_for_create(changes, catalog=get_catalog(), templates=_templates())
    assistant = _new_record(config)
    call = CallRecord(
        id="call_01MEMORY0000000000000000",
        direction=direction,  # type: ignore[arg-type]
        status="in_progress",
        assistant_id=assistant.id,
        phone_number_id="pn_01MEMORY000000000000000000",
        from_number="+14155550100",
        to_number="+14155550199",
        created_at=utcnow(),
        carrier_sid="CA" + "0" * 32,
    )
    context = CallContext(
        account_id="acct_01MEMORY00000000000000000",
        account_name="Memory Ltd",
        call=call,
        assistant=assistant,
    )
    context.fill_variables()
    return context


class RecordingServices(SessionServices):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.charges: list[tuple[Decimal, str, bool]] = []

    def charge(self, account_id: str, amount: Decimal, key: str, allow_negative: bool) -> None:
        self.charges.append((amount, key, allow_negative))

    async def mark_connected(self, context: CallContext) -> None:
        self.calls.append(("connected", None))

    async def answered_by(self, context: CallContext) -> str | None:
        return None

    async def record_end(self, context: CallContext, event: CallEvent) -> None:
        self.calls.append(("end", event))

    async def hang_up(self, carrier_sid: str) -> None:
        self.calls.append(("hang_up", carrier_sid))

    async def save(self, context: CallContext, session: Any) -> None:
        self.calls.append(("save", list(session.transcript.messages)))

    async def checkpoint(self, context: CallContext, messages: list[Any]) -> None:
        self.calls.append(("checkpoint", list(messages)))

    async def close(self, context: CallContext, **kwargs: Any) -> None:
        self.calls.append(("close", kwargs))

    async def opt_out(self, context: CallContext, detail: str) -> str | None:
        self.calls.append(("opt_out", detail))
        return context.call.contact_id

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]
