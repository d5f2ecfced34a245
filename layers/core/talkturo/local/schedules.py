"""Runs the functions template.yaml schedules (`Type: Schedule`, `rate(...)`), as EventBridge would.

Each scheduled function is invoked once shortly after start (so a developer sees it work without
waiting an hour), then at its rate, with an EventBridge "Scheduled Event" and a Lambda-shaped
context. A failing run is logged; the next one happens anyway. `cron(...)` expressions are not
run locally (none of the platform's schedules uses one); they are reported and skipped.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from talkturo.local.runner import Handler, LambdaContext, load_handler
from talkturo.local.template import Function, Stack

logger = logging.getLogger("local.schedules")

FIRST_RUN_AFTER_SECONDS = 5.0
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}


def rate_seconds(expression: str) -> float | None:
    """Seconds between runs of `rate(N unit)`; None for anything else (cron, malformed)."""
    match = _RATE.match(expression.strip())
    if not match:
        return None
    count, unit = int(match.group(1)), match.group(2).rstrip("s")
    return float(count * _UNIT_SECONDS[unit]) if count > 0 else None


@dataclass(frozen=True)
class Scheduled:
    function: Function
    expression: str
    every_seconds: float


def scheduled_functions(stack: Stack) -> list[Scheduled]:
    found = []
    for function in stack.functions.values():
        for expression in function.schedules:
            every = rate_seconds(expression)
            if every is None:
                logger.warning("%s: %s is not run locally", function.logical_id, expression)
                continue
            found.append(Scheduled(function, expression, every))
    return found


def scheduled_event(function: Function, region: str = "us-east-1") -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:000000000000:rule/{function.logical_id}"],
        "detail": {},
    }


class ScheduleRunner:
    """A platform component: one thread per scheduled function."""

    name = "schedules"

    def __init__(self, stack: Stack, *, first_run_after: float = FIRST_RUN_AFTER_SECONDS) -> None:
        self.stack = stack
        self.schedules = scheduled_functions(stack)
        self.first_run_after = first_run_after
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._handlers: dict[str, Handler] = {}
        self.runs: dict[str, int] = {}

    def start(self) -> None:
        self._stopping.clear()
        for schedule in self.schedules:
            thread = threading.Thread(
                target=self._loop,
                args=(schedule,),
                name=f"schedule:{schedule.function.logical_id}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def run_once(self, schedule: Scheduled) -> Any:
        """Invoke the function now, as its schedule would; answers what the handler returned."""
        function = schedule.function
        handler = self._handlers.get(function.logical_id)
        if handler is None:
            handler = self._handlers[function.logical_id] = load_handler(function)
        context = LambdaContext(
            function_name=f"{self.stack.name}-{function.logical_id}",
            invoked_function_arn=(
                f"arn:aws:lambda:us-east-1:000000000000:function:"
                f"{self.stack.name}-{function.logical_id}"
            ),
            memory_limit_in_mb=function.memory_mb,
            timeout_seconds=function.timeout_seconds,
        )
        self.runs[function.logical_id] = self.runs.get(function.logical_id, 0) + 1
        return handler(scheduled_event(function), context)

    def _loop(self, schedule: Scheduled) -> None:
        wait = self.first_run_after
        while not self._stopping.wait(wait):
            try:
                self.run_once(schedule)
            except Exception:  # the schedule outlives any failing run
                logger.exception("%s: the scheduled run failed", schedule.function.logical_id)
            wait = schedule.every_seconds


def describe(runner: ScheduleRunner) -> list[str]:
    return [f"{s.function.logical_id} every {s.expression}" for s in runner.schedules]
