"""Credits drawn while the call is live (SPEC §7): every `INCREMENT_SECONDS` of connected time
the elapsed block is drawn from the ledger, atomically and refused below zero; a refusal means
the account ran out and the call ends politely. On hang-up the rest is settled by the second
(the settlement may take the balance a few seconds below zero: the goodbye after a refusal).
The session's connected time bills, not the carrier's duration.

Each draw is keyed `call:<call>:<stream>:usage:<n>` and the settlement `…:settle`, so a retried
write never charges twice; a resumed call (a transfer that came back) is a new stream with its
own keys. The ledger calls are blocking (DynamoDB): they run in a worker thread.

What the session reports is what the ledger holds: a hang-up cancels the meter, never the draw
being written (settle waits for it); a failed write is retried with the same key, and one whose
outcome stayed unknown is written again with its key before settling, which either finds it
landed or lands it. The settlement's end and amount are fixed by its first attempt.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from decimal import Decimal

from tenacity import AsyncRetrying, retry_if_not_exception_type, stop_after_attempt
from tenacity import wait_random_exponential as backoff

from talkturo.domain.common import quantize_credits
from talkturo.errors import InsufficientCredits, InvalidRequest
from talkturo.logs import logger

INCREMENT_SECONDS = 10
WRITE_ATTEMPTS = 4


def ledger_charge(account_id: str, amount: Decimal, key: str, allow_negative: bool) -> None:
    """A usage entry in the account's ledger (InsufficientCredits below zero unless allowed),
    counted in the usage report under the call's assistant, campaign and number.

    A draw refused at zero while an auto-reload is pending draws against the reload's credits
    instead (a live call is not ended by a reload under way; one pending too long stops
    counting: services.auto_reload.pending_allowance)."""
    from talkturo.services import auto_reload, credits, usage

    call_id = key.split(":", 2)[1]

    def draw(overdraft: Decimal) -> None:
        credits.record(
            account_id,
            "usage",
            -amount,
            idempotency_key=key,
            description=f"call {call_id}",
            reference=call_id,
            allow_negative_balance=allow_negative,
            overdraft=overdraft,
            usage=usage.call_tags(account_id, call_id),
        )

    try:
        draw(Decimal(0))
    except InsufficientCredits:
        pending = auto_reload.pending_allowance(account_id)
        if pending <= 0:
            raise
        draw(pending)


class Meter:
    def __init__(
        self,
        *,
        account_id: str,
        call_id: str,
        stream_sid: str,
        rate_per_minute: Decimal,
        started_at: float,
        clock: Callable[[], float] = time.monotonic,
        increment_seconds: float = INCREMENT_SECONDS,
        charge: Callable[[str, Decimal, str, bool], None] | None = None,
    ) -> None:
        self.account_id = account_id
        self.call_id = call_id
        self.stream_sid = stream_sid
        self.rate = rate_per_minute
        self.started_at = started_at
        self.clock = clock
        self.increment = increment_seconds
        self.drawn = Decimal(0)
        self.blocks = 0
        self.exhausted = asyncio.Event()
        self.settled: Decimal | None = None
        # (account, credits, idempotency key, may go negative) → the ledger; blocking.
        self._charge = charge or ledger_charge
        # The block being drawn (its key and amount) and its write, which outlives a hang-up.
        self._block: tuple[str, Decimal] | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self._ended_at: float | None = None

    def _key(self, suffix: str) -> str:
        return f"call:{self.call_id}:{self.stream_sid}:{suffix}"

    def _amount(self, seconds: float) -> Decimal:
        return quantize_credits(self.rate * Decimal(seconds) / Decimal(60))

    def _record(self, amount: Decimal, key: str, allow_negative: bool) -> None:
        self._charge(self.account_id, amount, key, allow_negative)

    async def _write(self, amount: Decimal, key: str, *, allow_negative: bool) -> None:
        """One ledger entry; a failure is retried with the same key (a replay is harmless)."""
        retrying = AsyncRetrying(
            retry=retry_if_not_exception_type((InsufficientCredits, InvalidRequest)),
            stop=stop_after_attempt(WRITE_ATTEMPTS),
            wait=backoff(multiplier=0.2, max=2),
            reraise=True,
        )
        await retrying(asyncio.to_thread, self._record, amount, key, allow_negative)

    async def _draw(self, key: str, amount: Decimal, *, allow_negative: bool) -> None:
        await self._write(amount, key, allow_negative=allow_negative)
        self.blocks += 1
        self.drawn += amount

    async def run(self) -> None:
        """Draw block after block until cancelled or the balance runs out."""
        while True:
            due = self.started_at + (self.blocks + 1) * self.increment
            await asyncio.sleep(max(0.0, due - self.clock()))
            if self._ended_at is not None:
                return  # settling: nothing more is drawn
            amount = self._amount(self.increment)
            if amount <= 0:
                self.blocks += 1
                continue
            self._block = (self._key(f"usage:{self.blocks}"), amount)
            self._in_flight = asyncio.create_task(self._draw(*self._block, allow_negative=False))
            try:
                # A hang-up cancels the meter, not the write: settle() waits for it.
                await asyncio.shield(self._in_flight)
            except InsufficientCredits:
                logger.info("call out of credits", extra={"id": self.call_id})
                self.exhausted.set()
                return
            except Exception:  # noqa: BLE001 - the settlement writes it again, with its key
                logger.exception("usage draw failed", extra={"id": self.call_id})
                return

    async def _land_in_flight(self) -> None:
        """The draw a hang-up interrupted ends counted or refused, never unknown."""
        if self._in_flight is None:
            return
        try:
            await asyncio.shield(self._in_flight)
        except InsufficientCredits:
            pass  # refused: nothing was written; the settlement covers its seconds
        except Exception:  # noqa: BLE001 - unknown whether it landed: the same key again
            assert self._block is not None
            self._in_flight = asyncio.create_task(self._draw(*self._block, allow_negative=True))
            await asyncio.shield(self._in_flight)

    def charge_for(self, seconds: float) -> Decimal:
        """What `seconds` of connected time cost, by the whole second."""
        return self._amount(math.ceil(max(0.0, seconds)))

    @property
    def billed_seconds(self) -> int:
        """The connected seconds the charge pays for: all of them once settled."""
        if self.settled is not None and self._ended_at is not None:
            return math.ceil(max(0.0, self._ended_at - self.started_at))
        return math.floor(self.blocks * self.increment)

    async def settle(self, ended_at: float) -> Decimal:
        """Draw what the drawn blocks did not cover; the session's total charge.

        Once the meter's run is over. A retry after a failure bills the end the first attempt
        was given, and writes the same amount under the same key.
        """
        if self.settled is not None:
            return self.settled
        if self._ended_at is None:
            self._ended_at = ended_at
        await self._land_in_flight()
        total = self.charge_for(self._ended_at - self.started_at)
        rest = total - self.drawn  # the same on a retry: the end is fixed, the draws are final
        if rest > 0:
            await self._write(rest, self._key("settle"), allow_negative=True)
        self.settled = max(total, self.drawn)
        return self.settled
