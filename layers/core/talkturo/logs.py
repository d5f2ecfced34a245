"""One structured logger for the whole package (powertools; JSON lines on Lambda)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from aws_lambda_powertools import Logger


class ThreadLogger(Logger):
    """powertools' Logger whose appended keys belong to the thread (or asyncio task) that
    appended them.

    `append_keys` (which `inject_lambda_context` calls with the invocation's context) would put
    the keys on the one formatter every thread shares: where several handlers run side by side
    (the local platform's workers) each line would carry whichever invocation came last.
    On Lambda, one invocation at a time, both behave the same.
    """

    def append_keys(self, **additional_keys: object) -> None:
        self.thread_safe_append_keys(**additional_keys)

    def remove_keys(self, keys: Iterable[str]) -> None:
        gone = set(keys)
        # A new dict, never the one a parent context may still hold (powertools pops in place).
        kept = {k: v for k, v in self.thread_safe_get_current_keys().items() if k not in gone}
        self.thread_safe_clear_keys()
        self.thread_safe_append_keys(**kept)

    def get_current_keys(self) -> dict[str, Any]:
        return {**super().get_current_keys(), **self.thread_safe_get_current_keys()}


logger = ThreadLogger(service="talkturo")


class _ThreadName(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # An attribute logging does not know becomes a key of the JSON line.
        record.thread_name = record.threadName
        return True


def name_threads(of: Logger = logger) -> None:
    """Every JSON line names the thread that wrote it (locally, where workers share a process)."""
    handler = of.registered_handler
    if not any(isinstance(f, _ThreadName) for f in handler.filters):
        handler.addFilter(_ThreadName())
