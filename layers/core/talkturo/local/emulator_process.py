"""The AWS emulator in a process of its own: what `talkturo dev` runs.

Python runs one thread at a time per process, so with the emulator in the platform's process
every AWS call of a worker waited for the core the worker itself needed: the import worker
(building and sending its requests) and the emulator (answering them) took turns on one core.
In a process of its own the emulator answers on the other core while the worker goes on.

`EmulatorProcess` answers to what the platform asks of an emulator (its endpoint, whether it
runs, its count of changes, ending long polls) and is the `Keeper` of its data (the snapshot's
restore at start and each save, local/persistence.py): those read moto's backends, so they run
in the emulator's process, which then writes the snapshot files itself. The platform asks over
its stdin and stdout (`python -m talkturo.local.emulator_process`), one request at a time; the
process ends when asked to, and on its own when the platform is gone (its end of the pipe
closed: a crash or a `kill -9` leaves no emulator behind).

The emulator's process ignores Ctrl-C (the terminal sends it to every process of the group):
the platform saves the data first and then stops it.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from talkturo.local.emulator import FAKE_CREDENTIALS
from talkturo.local.persistence import DataError, DataFolder, Restored

# How long the process may take to import moto and listen (a loaded machine takes seconds).
START_SECONDS = 120.0
STOP_SECONDS = 10.0


class EmulatorError(Exception):
    """The emulator's process could not start, or failed a request (the message says why)."""


class EmulatorProcess:
    """`Emulator`'s counterpart in a child process (host, port: as `Emulator`'s)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._sender: Connection | None = None
        self._receiver: Connection | None = None
        self._lock = threading.Lock()
        self._endpoint: str | None = None

    @property
    def endpoint(self) -> str:
        assert self._endpoint is not None, "start() first"
        return self._endpoint

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def changes(self) -> int:
        changes: int = self._ask("changes")
        return changes

    def end_long_polls(self) -> None:
        if self.running:
            self._ask("end_long_polls")

    def environment(self) -> dict[str, str]:
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def load(self, folder: DataFolder, prefix: str) -> Restored:
        restored: Restored = self._ask("load", str(folder.path), prefix)
        return restored

    def save(self, folder: DataFolder, prefix: str, parts: dict[str, Any]) -> None:
        self._ask("save", str(folder.path), prefix, parts)

    def start(self) -> EmulatorProcess:
        command = [sys.executable, "-m", __name__, self._host, str(self._port)]
        # This interpreter, this module, and a host and port of the platform's own.
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: S603
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        # Requests go down its stdin, answers come up its stdout.
        self._sender = Connection(os.dup(process.stdin.fileno()), readable=False)
        self._receiver = Connection(os.dup(process.stdout.fileno()), writable=False)
        process.stdin.close()
        process.stdout.close()
        try:
            if not self._receiver.poll(START_SECONDS):
                raise EmulatorError("the AWS emulator did not start in time")
            self._endpoint = self._answer(self._receiver.recv())
        except (EOFError, OSError, EmulatorError) as error:
            self.stop()
            raise EmulatorError(
                str(error) if isinstance(error, EmulatorError) else "the AWS emulator exited"
            ) from None
        return self

    def stop(self) -> None:
        sender, receiver, process = self._sender, self._receiver, self._process
        self._sender = self._receiver = self._process = None
        if sender is not None and receiver is not None:
            try:
                with self._lock:
                    sender.send(("stop", ()))
                    if receiver.poll(STOP_SECONDS):
                        receiver.recv()
            except (OSError, EOFError):
                pass  # already gone
            sender.close()
            receiver.close()
        if process is not None:
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_SECONDS)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ask(self, name: str, *args: Any) -> Any:
        with self._lock:
            if self._sender is None or self._receiver is None:
                raise EmulatorError("the AWS emulator is not running")
            try:
                self._sender.send((name, args))
                answer = self._receiver.recv()
            except (OSError, EOFError):
                raise EmulatorError("the AWS emulator's process has stopped") from None
        return self._answer(answer)

    @staticmethod
    def _answer(answer: tuple[str, Any]) -> Any:
        kind, value = answer
        if kind == "data_error":
            raise DataError(value)
        if kind == "error":
            raise EmulatorError(value)
        return value


def _frozen(value: Any) -> Any:
    """`value`, once everything alive now is left out of the cycle collector's walks: what a
    restore loaded lives as long as the process (or until overwritten, then freed as usual by
    its reference count)."""
    gc.collect()
    gc.freeze()
    return value


def _serve(receiver: Connection, sender: Connection, host: str, port: int) -> None:
    """The emulator's process: serve on host:port, answer the platform's requests."""
    from talkturo.local.emulator import Emulator
    from talkturo.local.persistence import InProcess

    # The emulator holds millions of long-lived objects (every item of every table, value by
    # value) and makes thousands a request: at Python's default thresholds (a young collection
    # every 700 allocations, the whole store walked now and then) the cycle collector took about
    # a sixth of the emulator's CPU during an import (docs/benchmarks.md). Fewer, larger young
    # collections, fewer full ones; what a restore loaded frozen out of them (`_frozen`).
    gc.set_threshold(100_000, 50, 100)
    emulator = Emulator(host=host, port=port)
    try:
        emulator.start()
    except (OSError, SystemExit) as exc:
        reason = getattr(exc, "strerror", None) or "address in use"
        sender.send(("error", f"the AWS emulator cannot listen on {host}:{port} ({reason})"))
        return
    keeper = InProcess(emulator)
    handlers: dict[str, Any] = {
        "changes": lambda: emulator.changes,
        "end_long_polls": emulator.end_long_polls,
        "load": lambda path, prefix: _frozen(keeper.load(DataFolder(Path(path)), prefix)),
        "save": lambda path, prefix, parts: keeper.save(DataFolder(Path(path)), prefix, parts),
    }
    sender.send(("ok", emulator.endpoint))
    while True:
        try:
            name, args = receiver.recv()
        except (EOFError, OSError):
            return  # the platform is gone
        if name == "stop":
            emulator.stop()
            sender.send(("ok", None))
            return
        try:
            sender.send(("ok", handlers[name](*args)))
        except DataError as error:
            sender.send(("data_error", str(error)))
        except Exception as error:  # the platform says what failed
            logging.getLogger("local.emulator").exception("%s failed", name)
            sender.send(("error", f"{name} failed: {error!r}"))


def main() -> None:
    """`python -m talkturo.local.emulator_process HOST PORT`: what `EmulatorProcess` runs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    host, port = sys.argv[1], int(sys.argv[2])
    receiver = Connection(os.dup(0), writable=False)
    sender = Connection(os.dup(1), readable=False)
    # The pipes carry requests and answers only: whatever else is written goes to stderr.
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s [aws-emulator] %(levelname)s %(name)s: %(message)s",
    )
    _serve(receiver, sender, host, port)
    # Nothing is left to keep (the platform saved the data before stopping it): no teardown of
    # moto's objects, which takes seconds once they hold a customer's data.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
