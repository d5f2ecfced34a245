"""The meter charges a call exactly what its ledger says, whatever is cancelled or retried when.

The ledger here behaves like the real one (one entry per idempotency key; a replay of the same
amount answers as if it were written) but is slow, fails before writing, fails after writing
(the caller cannot tell whether it landed), refuses below zero, and the hang-up lands at any
point: while a draw is being written, after it landed, or between draws.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from talkturo.errors import Conflict, InsufficientCredits
from talkturo.voice.metering import Meter
from tests.unit.test_voice_loop_parts import (  # the event loop's own socket is allowed
    FakeTime,
    _event_loop_sockets,  # noqa: F401
    _meter,
    _real_sleep,
    run,
    until,
)

Outcome = str  # "ok", "fail_before", "fail_after", "refuse"


class FlakyLedger:
    """Honours idempotency keys; the n-th write does what `script[n]` says (then "ok")."""

    def __init__(self, script: list[Outcome], cancel_at: tuple[int, str] | None = None) -> None:
        self.script = script
        self.cancel_at = cancel_at
        self.entries: dict[str, Decimal] = {}
        self.writes = 0
        self.hung_up_at: float | None = None
        self._lock = threading.Lock()
        self._meter_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._meter_over = threading.Event()
        self._time: FakeTime | None = None

    def hang_up_with(self, task: asyncio.Task[None], time: FakeTime) -> None:
        """The hang-up cancels `task` when the write chosen by `cancel_at` gets there."""
        self._meter_task, self._time = task, time
        self._loop = asyncio.get_running_loop()
        task.add_done_callback(lambda _: self._meter_over.set())

    def _maybe_hang_up(self, write: int, phase: str) -> None:
        if (write, phase) != self.cancel_at or self._meter_task is None or self._loop is None:
            return
        assert self._time is not None
        self.hung_up_at = self._time.now
        self._loop.call_soon_threadsafe(self._meter_task.cancel)
        # The write goes on only once the meter is gone: the hang-up landed mid-write.
        assert self._meter_over.wait(timeout=5), "the meter did not stop"

    def __call__(self, account: str, amount: Decimal, key: str, allow_negative: bool) -> None:
        assert threading.current_thread() is not threading.main_thread(), "blocking: a thread"
        with self._lock:
            write, self.writes = self.writes, self.writes + 1
        outcome = self.script[write] if write < len(self.script) else "ok"
        self._maybe_hang_up(write, "before")
        if outcome == "fail_before":
            raise ConnectionError("the ledger is unreachable")
        with self._lock:
            if key in self.entries:
                if self.entries[key] != amount:
                    raise Conflict("this idempotency key was already used for another amount")
            elif outcome == "refuse" and not allow_negative:
                raise InsufficientCredits("the account has too few credits for this")
            else:
                self.entries[key] = amount
        self._maybe_hang_up(write, "after")
        if outcome == "fail_after":
            raise TimeoutError("written, but the answer was lost")

    def total(self) -> Decimal:
        return sum(self.entries.values(), Decimal(0))


async def _settled(meter: Meter, ended_at: float, time: FakeTime) -> Decimal:
    """Settle, moving fake time on while retries wait; a failed settle is retried later."""
    for attempt in range(30):
        # A retry comes later, but must bill the hang-up the first one saw.
        settling = asyncio.create_task(meter.settle(ended_at + 60 * attempt))
        async with asyncio.timeout(5):
            while not settling.done():
                await time.advance(1)
                await _real_sleep(0.001)
        with contextlib.suppress(Exception):
            return settling.result()
    raise AssertionError("settlement never succeeded")


def test_a_hang_up_during_a_slow_draw_does_not_charge_that_block_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    time = FakeTime(start=0.0)
    monkeypatch.setattr(asyncio, "sleep", time.sleep)
    writing, release = threading.Event(), threading.Event()
    ledger = FlakyLedger([])

    def slow(account: str, amount: Decimal, key: str, allow_negative: bool) -> None:
        if key.endswith(":usage:0"):
            writing.set()
            assert release.wait(timeout=5)
        ledger(account, amount, key, allow_negative)

    async def scenario() -> None:
        meter = _meter(time, ledger, "0.2")  # 0.0333 a 10 s block
        meter._charge = slow
        task = asyncio.create_task(meter.run())
        await time.advance_to(15)
        await until(writing.is_set)
        task.cancel()  # the caller hung up at 15 s, the first block still being written
        with contextlib.suppress(asyncio.CancelledError):
            await task
        release.set()
        charged = await _settled(meter, 15, time)
        assert charged == Decimal("0.0500")
        assert ledger.entries == {
            "call:call_9:MZ7:usage:0": Decimal("0.0333"),
            "call:call_9:MZ7:settle": Decimal("0.0167"),
        }
        assert meter.billed_seconds == 15

    run(scenario())


def test_a_draw_that_landed_but_answered_an_error_is_counted_once() -> None:
    time = FakeTime(start=0.0)
    ledger = FlakyLedger(["fail_after", "fail_before"])  # then the retry finds it written

    async def scenario() -> None:
        meter = _meter(time, ledger, "6")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(asyncio, "sleep", time.sleep)
            task = asyncio.create_task(meter.run())
            await time.advance_to(10)
            async with asyncio.timeout(5):
                while meter.blocks < 1:  # the retries wait a moment between tries
                    await time.advance(0.1)
                    await _real_sleep(0.001)
            assert ledger.writes == 3  # the write, then two retries with the same key
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert await _settled(meter, 12, time) == Decimal("1.2000") == ledger.total()

    run(scenario())


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    rate=st.sampled_from(["0.2", "6", "0.07", "1.3333"]),
    hang_up=st.floats(min_value=0, max_value=65),
    script=st.lists(st.sampled_from(["ok", "fail_before", "fail_after", "refuse"]), max_size=14),
    cancel_at=st.none() | st.tuples(st.integers(0, 14), st.sampled_from(["before", "after"])),
)
def test_the_charge_is_the_ledger_whatever_is_cancelled_or_retried_when(
    rate: str, hang_up: float, script: list[Outcome], cancel_at: tuple[int, str] | None
) -> None:
    time = FakeTime(start=0.0)
    ledger = FlakyLedger(script, cancel_at)

    async def scenario() -> None:
        meter = _meter(time, ledger, rate)
        task = asyncio.create_task(meter.run())
        ledger.hang_up_with(task, time)
        async with asyncio.timeout(5):
            while time.now < hang_up and ledger.hung_up_at is None:
                await time.advance_to(min(hang_up, time.now + 0.5))
                await _real_sleep(0)
        ended_at = ledger.hung_up_at if ledger.hung_up_at is not None else hang_up
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        ledger.cancel_at = None
        charged = await _settled(meter, ended_at, time)

        assert charged == ledger.total()
        drawn = sum(v for k, v in ledger.entries.items() if ":usage:" in k)
        assert charged == max(meter.charge_for(ended_at), drawn)
        assert meter.billed_seconds == math.ceil(ended_at)
        # Settled once: asking again changes nothing.
        assert await meter.settle(ended_at + 100) == charged == ledger.total()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncio, "sleep", time.sleep)
        run(scenario())
