"""A Lambda execution environment in a process of its own, for the local platform's runner.

On AWS each batch a function works on at once runs in an execution environment of its own. The
local runner runs handlers in the platform's process, one thread per batch, which is the same
but for one thing: Python runs one thread at a time per process. For a function that spends a
batch on its own CPU (the contact import builds hundreds of items a second), two batches worked
at once then take turns on one core, and with them the API and every other worker. A function
named to the runner as one of its `own_process` functions gets a process per poller instead,
started on its first batch and kept for the next ones, as Lambda keeps a warm environment.

`LambdaProcess.invoke` sends the event and the context over the child's stdin and reads the
answer on its stdout (`python -m talkturo.local.lambda_process`); what the handler prints goes
to stderr, with the platform's console. The child inherits the platform's environment (the
stack's variables, the emulator's endpoint) as it is when the child starts; it ends when its
stdin closes (the platform stopped, or is gone: no process is left behind).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from talkturo.local.template import Function

# A child that does not answer its start in this long is taken for failed (imports on a busy
# machine take a few seconds).
START_SECONDS = 120.0


class HandlerFailed(Exception):
    """The handler raised in its process (the message is its traceback), or the process died."""


class LambdaProcess:
    """One execution environment of `function`; `name` tags its log lines (the poller's)."""

    def __init__(self, function: Function, name: str) -> None:
        self.function = function
        self.name = name
        self._process: subprocess.Popen[bytes] | None = None
        self._sender: Connection | None = None
        self._receiver: Connection | None = None
        self._lock = threading.Lock()

    def invoke(self, event: dict[str, Any], context: Any) -> Any:
        """The handler's answer to `event`; HandlerFailed when it raised or its process died
        (a new process is started for the next batch then)."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            assert self._sender is not None and self._receiver is not None
            try:
                self._sender.send(("invoke", (event, context)))
                kind, value = self._receiver.recv()
            except (OSError, EOFError):
                self._discard()
                raise HandlerFailed(f"the process of {self.function.logical_id} died") from None
            if kind == "error":
                raise HandlerFailed(value)
            return value

    def close(self) -> None:
        """End the process (a batch it is still working on comes back after the queue's
        visibility timeout, as a Lambda cut off)."""
        with self._lock:
            self._discard()

    def kill(self) -> None:
        """End the process at once, without waiting for a batch it may be working on."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()

    def _start(self) -> None:
        self._discard()
        command = [sys.executable, "-m", __name__]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: S603
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._sender = Connection(os.dup(process.stdin.fileno()), readable=False)
        self._receiver = Connection(os.dup(process.stdout.fileno()), writable=False)
        process.stdin.close()
        process.stdout.close()
        level = logging.getLogger().getEffectiveLevel()
        try:
            self._sender.send(("load", (self.function, self.name, level)))
            if not self._receiver.poll(START_SECONDS):
                raise HandlerFailed(f"the process of {self.function.logical_id} did not start")
            kind, value = self._receiver.recv()
        except (OSError, EOFError):
            self._discard()
            raise HandlerFailed(f"the process of {self.function.logical_id} died") from None
        if kind == "error":
            self._discard()
            raise HandlerFailed(value)

    def _discard(self) -> None:
        for connection in (self._sender, self._receiver):
            if connection is not None:
                connection.close()
        self._sender = self._receiver = None
        process, self._process = self._process, None
        if process is not None:
            try:
                process.wait(timeout=5)  # its stdin closed: it ends after the batch it is on
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _serve(receiver: Connection, sender: Connection) -> None:
    from talkturo.local.console import console_logging
    from talkturo.local.runner import load_handler

    handler = None
    while True:
        try:
            kind, value = receiver.recv()
        except (EOFError, OSError):
            return  # the platform closed its end, or is gone
        try:
            if kind == "load":
                function, name, level = value
                threading.current_thread().name = name  # the poller's, on every log line
                console_logging(level <= logging.DEBUG)
                handler = load_handler(function)
                sender.send(("ok", None))
            else:
                assert handler is not None, "invoked before it was loaded"
                event, context = value
                sender.send(("ok", handler(event, context)))
        except (Exception, SystemExit):  # noqa: BLE001 - the runner logs it, as for any handler
            sender.send(("error", traceback.format_exc()))


def main() -> None:
    """`python -m talkturo.local.lambda_process`: what `LambdaProcess` runs."""
    import signal

    # Ctrl-C goes to the whole process group: the platform stops the runner, which ends this.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    receiver = Connection(os.dup(0), writable=False)
    sender = Connection(os.dup(1), readable=False)
    # The pipes carry requests and answers only: whatever else is written goes to stderr.
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    _serve(receiver, sender)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
