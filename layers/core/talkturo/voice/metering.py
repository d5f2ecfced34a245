"""Credits drawn while the call is live (SPEC §7): every `INCREMENT_SECONDS` of connected time
the elapsed block is drawn from the ledger, atomically and refused below zero; a refusal means
the account ran out and the call ends politely. On hang-up the rest is settled by the second
(the settlement may take the balance a few seconds below zero: the goodbye after a refusal).

Each draw is keyed `call:<call>:<stream>:usage:<n>` and the settlement `…:settle`, so a retried
write never charges twice; a resumed call (a transfer that came back) is a new stream with its
own keys. The ledger calls are blocking (DynamoDB): they run in a worker thread.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from decimal import Decimal

from talkturo.domain.common import quantize_credits
from talkturo.errors import InsufficientCredits
from talkturo.logs import logger

INCREMENT_SECONDS = 10


def ledger_charge(account_id: str, amount: Decimal, key: str, allow_negative: bool) -> None:
    """A usage entry in the account's ledger (InsufficientCredits below zero unless allowed)."""
    from talkturo.services import credits

    call_id = key.split(":", 2)[1]
    credits.record(
        account_id,
        "usage",
        -amount,
        idempotency_key=key,
        description=f"call {call_id}",
        reference=call_id,
        allow_negative_balance=allow_negative,
    )


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

    def _key(self, suffix: str) -> str:
        return f"call:{self.call_id}:{self.stream_sid}:{suffix}"

    def _amount(self, seconds: float) -> Decimal:
        return quantize_credits(self.rate * Decimal(seconds) / Decimal(60))

    def _record(self, amount: Decimal, key: str, *, allow_negative: bool) -> None:
        self._charge(self.account_id, amount, key, allow_negative)

    async def run(self) -> None:
        """Draw block after block until cancelled or the balance runs out."""
        while True:
            due = self.started_at + (self.blocks + 1) * self.increment
            await asyncio.sleep(max(0.0, due - self.clock()))
            amount = self._amount(self.increment)
            if amount <= 0:
                self.blocks += 1
                continue
            try:
                await asyncio.to_thread(
                    self._record, amount, self._key(f"usage:{self.blocks}"), allow_negative=False
                )
            except InsufficientCredits:
                logger.info("call out of credits", extra={"id": self.call_id})
                self.exhausted.set()
                return
            self.blocks += 1
            self.drawn += amount

    def charge_for(self, seconds: float) -> Decimal:
        """What `seconds` of connected time cost, by the whole second."""
        return self._amount(math.ceil(max(0.0, seconds)))

    async def settle(self, ended_at: float) -> Decimal:
        """Draw what the drawn blocks did not cover; the session's total charge."""
        if self.settled is not None:
            return self.settled
        total = self.charge_for(ended_at - self.started_at)
        rest = total - self.drawn
        if rest > 0:
            await asyncio.to_thread(self._record, rest, self._key("settle"), allow_negative=True)
        self.settled = max(total, self.drawn)
        return self.settled
