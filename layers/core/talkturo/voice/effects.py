"""What a call session does outside the call: the store, the carrier, the tools' HTTP.

One class, `SessionServices`, so a test (or the benchmark) replaces single methods. Blocking work
(DynamoDB, S3, the carrier's REST API) runs in worker threads: the session's event loop carries
the audio of many calls and never waits on I/O itself.
"""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from talkturo.domain.assistant_tools import SchedulingTool, TransferCallTool, WebhookTool
from talkturo.domain.calls import Booking, CallEvent, CallRecord, TranscriptMessage
from talkturo.domain.common import utcnow
from talkturo.voice.context import CallContext

if TYPE_CHECKING:
    from talkturo.voice.session import CallSession


class SessionServices:
    """The session's side effects outside the call."""

    def charge(self, account_id: str, amount: Decimal, key: str, allow_negative: bool) -> None:
        """Blocking (the meter runs it in a worker thread)."""
        from talkturo.voice.metering import ledger_charge

        ledger_charge(account_id, amount, key, allow_negative)

    async def mark_connected(self, context: CallContext) -> None:
        from talkturo.services import calls

        await asyncio.to_thread(calls.mark_connected, context.account_id, context.call.id)

    async def answered_by(self, context: CallContext) -> str | None:
        from talkturo.services import calls

        record = await asyncio.to_thread(calls.get_record, context.account_id, context.call.id)
        return record.answered_by

    async def record_end(self, context: CallContext, event: CallEvent) -> None:
        from talkturo.services import calls

        await asyncio.to_thread(
            calls.record_session_end, context.account_id, context.call.id, event
        )

    def can_transfer(self, context: CallContext) -> bool:
        """Whether transfer_call can move this call (the carrier must know it)."""
        return bool(context.call.carrier_sid)

    async def hang_up(self, carrier_sid: str) -> None:
        from talkturo.carrier import get_carrier

        await asyncio.to_thread(get_carrier().hang_up, carrier_sid)

    async def transfer(
        self, context: CallContext, tool: TransferCallTool, name: str, brief: str
    ) -> None:
        from talkturo.services import transfers

        destination = next(d for d in tool.config.destinations if d.name == name)
        if tool.config.mode == "warm":
            await asyncio.to_thread(
                transfers.start_warm,
                context.account_id,
                context.call,
                destination,
                brief=brief,
                ring_tone=tool.config.ring_tone,
            )
        else:
            await asyncio.to_thread(
                transfers.start_cold,
                context.account_id,
                context.call,
                destination,
                ring_tone=tool.config.ring_tone,
            )

    async def webhook(
        self, tool: WebhookTool, arguments: dict[str, Any], call: dict[str, str]
    ) -> dict[str, Any]:
        from talkturo.voice.tools import webhook

        return await webhook.call_webhook(tool.config, arguments, call=call)

    async def scheduling(
        self, tool: SchedulingTool, name: str, arguments: dict[str, Any], call: dict[str, str]
    ) -> tuple[dict[str, Any], Booking | None]:
        from talkturo.voice.tools import scheduling

        return await scheduling.run(tool.config, name, arguments, call=call)

    async def opt_out(self, context: CallContext, detail: str) -> str | None:
        """The caller asked not to be called again: their contact (the call's, else the one
        holding their number) marked do-not-call with the activity entry, and the call record
        `opted_out`. The contact's id; None when no contact has the caller's number."""
        from talkturo.errors import NotFound
        from talkturo.services import calls, contacts

        def write() -> str | None:
            account_id, call = context.account_id, context.call
            contact_id = call.contact_id or contacts.find_by_phone(
                account_id, context.customer_number
            )
            if contact_id is not None:
                try:
                    contacts.opt_out(account_id, contact_id, call_id=call.id, detail=detail)
                except NotFound:
                    contact_id = None  # deleted since the call began
            calls.mark_opted_out(account_id, call.id)
            return contact_id

        return await asyncio.to_thread(write)

    def opt_out_note(self, contact_id: str | None) -> str:
        """What the transcript says the opt-out marked."""
        return f"contact {contact_id}" if contact_id else "no contact has the caller's number"

    async def save(self, context: CallContext, session: CallSession) -> None:
        """The transcript and (when enabled) the recording, once the call is over."""
        from talkturo.services import calls

        messages = list(session.transcript.messages)
        recording = session.recorder if context.assistant.telephony.recording_enabled else None

        def write() -> None:
            # Encoding the WAV takes a while for a long call: not on the event loop.
            wav = recording.wav() if recording is not None else None
            calls.save_conversation(
                context.account_id, context.call.id, messages=messages, recording_wav=wav
            )

        await asyncio.to_thread(write)

    async def checkpoint(self, context: CallContext, messages: list[TranscriptMessage]) -> None:
        """The transcript so far, while the call goes on (kept if the service dies)."""
        from talkturo.services import calls

        await asyncio.to_thread(
            calls.save_conversation,
            context.account_id,
            context.call.id,
            messages=messages,
            recording_wav=None,
        )

    async def close(
        self,
        context: CallContext,
        *,
        stream_sid: str,
        charge: Decimal,
        billed_seconds: int,
        recorded: bool,
        bookings: list[Booking],
        end: CallEvent | None,
    ) -> None:
        from talkturo.services import calls

        await asyncio.to_thread(
            calls.close_session,
            context.account_id,
            context.call.id,
            stream_sid=stream_sid,
            charge=charge,
            billed_seconds=billed_seconds,
            recorded=recorded,
            bookings=bookings,
            end=end,
        )


class TestCallServices(SessionServices):
    """A test call's side effects (services.test_calls): no carrier, no credits, no contact.

    - credits: none drawn (the context's rate is 0 for a test call; `charge` refuses to write);
      the connected seconds are recorded as the call's test seconds (`calls.close_session`);
    - transfer_call: simulated, nothing is dialled: the record says `transferred_to` the
      destination and the call ends `transferred`;
    - opt-out: the test call is marked `opted_out`; no contact is marked do-not-call;
    - the assistant's webhook and scheduling tools run as on a real call: they are the
      customer's own systems, and a test that skipped them would not test the assistant.
    """

    def charge(self, account_id: str, amount: Decimal, key: str, allow_negative: bool) -> None:
        if amount > 0:
            raise RuntimeError("a test call draws no credits")

    def can_transfer(self, context: CallContext) -> bool:
        return True

    async def hang_up(self, carrier_sid: str) -> None:
        return None  # no carrier call: the session ending closes the stream

    async def transfer(
        self, context: CallContext, tool: TransferCallTool, name: str, brief: str
    ) -> None:
        from talkturo.domain.calls import apply
        from talkturo.services import calls

        def simulated(record: CallRecord) -> CallRecord:
            """Put through at once; the call ends here, as the carrier would report it."""
            moved = record.model_copy(
                update={
                    "transferred_to": name,
                    "transfer_status": "completed",
                    "transfer_mode": tool.config.mode,
                }
            )
            now = utcnow()
            answered = record.answered_at or now
            end = CallEvent(
                at=now,
                status="ended",
                outcome="answered",
                ended_reason="transferred",
                duration_seconds=math.ceil((now - answered).total_seconds()),
            )
            return apply(moved, end) or moved

        await asyncio.to_thread(calls.change, context.account_id, context.call.id, simulated)

    async def opt_out(self, context: CallContext, detail: str) -> str | None:
        from talkturo.services import calls

        await asyncio.to_thread(calls.mark_opted_out, context.account_id, context.call.id)
        return None

    def opt_out_note(self, contact_id: str | None) -> str:
        return "a test call marks no contact do-not-call"
