"""The contact-import worker alone: the emulator in this process, no `talkturo dev` around it.

`python -m benchmarks.import_worker [--rows N] [--update] [--profile] [--apart] [--workers N]`:
imports N contacts (3,000 by default, `benchmarks.scale`'s CSV) through the import service, as
the worker's Lambda does, and prints the rate and the CPU a row (this process's and, with the
emulator in this process, the emulator's share of it). `--update` imports the same file a
second time (every row then updates its contact) and times that too; `--profile` runs the
import under cProfile and prints its top functions; `--apart` runs the emulator in a process of
its own, as `talkturo dev` does (the CPU a row then counts both processes); `--workers N` works
N of the chunks the upload queued at once (`talkturo dev`'s import queue works 2). What
`benchmarks.scale` measures end to end, without the HTTP, queue and snapshot around it: where
the worker's own time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import threading
import time
from pathlib import Path
from typing import Any

import boto3

from benchmarks.scale import csv_file


def _cpu(child: int | None) -> float:
    """CPU seconds of this process, and of the emulator's process when it has its own."""
    return time.process_time() + _child_cpu(child)


def _child_cpu(child: int | None) -> float:
    if child is None:
        return 0.0
    ticks = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
    return sum(map(int, ticks)) / os.sysconf("SC_CLK_TCK")


def _import(
    account_id: str, raw: bytes, child: int | None = None, workers: int = 1
) -> tuple[float, float, dict[str, int]]:
    """Upload, then work the chunks it queued (`workers` at a time) until the job is done."""
    from talkturo.config import get_settings
    from talkturo.domain.contact_imports import ImportChunk
    from talkturo.services import contact_imports

    sqs = boto3.client("sqs")
    url = get_settings().contact_import_queue_url
    started, cpu, apart = time.perf_counter(), _cpu(child), _child_cpu(child)
    job = contact_imports.start(account_id, raw, "text/csv")

    def work() -> None:
        while contact_imports.get(account_id, job.id).status not in ("completed", "failed"):
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
            for message in answer.get("Messages", []):
                contact_imports.process_chunk(ImportChunk.model_validate_json(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, cpu = time.perf_counter() - started, _cpu(child) - cpu
    global _APART_CPU
    _APART_CPU = _child_cpu(child) - apart
    done = contact_imports.get(account_id, job.id)
    assert done.status == "completed", done
    counts = {"created": done.created, "updated": done.updated, "failed": done.failed}
    return seconds, cpu, counts


# The emulator's process's CPU seconds during the last import (with --apart).
_APART_CPU = 0.0


class _Timed:
    """The CPU time the emulator's requests take, in their threads (this process)."""

    def __init__(self, aws: Any) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()
        counted = aws._counted
        app = counted._app

        def timed(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            started = time.thread_time()
            try:
                return list(app(environ, start_response))
            finally:
                with self._lock:
                    self.seconds += time.thread_time() - started

        counted._app = timed


def _profile_requests(aws: Any, profile: cProfile.Profile) -> None:
    """Every request the emulator serves runs under `profile` (they run one at a time)."""
    counted = aws._counted
    app = counted._app

    def profiled(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        profile.enable()
        try:
            return list(app(environ, start_response))
        finally:
            profile.disable()

    counted._app = profiled


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.import_worker")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--update", action="store_true", help="import the same file again")
    parser.add_argument("--profile", action="store_true", help="under cProfile")
    parser.add_argument("--apart", action="store_true", help="the emulator in a process of its own")
    parser.add_argument(
        "--workers", type=int, default=1, help="chunks worked at once (talkturo dev: 2)"
    )
    options = parser.parse_args()
    if options.apart and options.profile:
        parser.error("--profile profiles the emulator in this process: not with --apart")

    from talkturo import config, logs
    from talkturo.domain.accounts import AccountCreate
    from talkturo.local.emulator import Emulator
    from talkturo.local.emulator_process import EmulatorProcess
    from talkturo.local.template import provision
    from talkturo.services import accounts

    logs.logger.setLevel("WARNING")  # a line per chunk otherwise
    with EmulatorProcess() if options.apart else Emulator() as aws:
        os.environ.update(aws.environment())
        stack = provision(boto3.Session(), stack_name="bench")
        os.environ.update(stack.environment())
        config.get_settings.cache_clear()
        account, _ = accounts.create_account(AccountCreate(name="bench", email="bench@example.com"))
        raw = csv_file(options.rows)
        profile = cProfile.Profile() if options.profile else None
        served = cProfile.Profile() if options.profile else None
        if served is not None:
            _profile_requests(aws, served)
        child = aws._process.pid if isinstance(aws, EmulatorProcess) else None
        emulator = _Timed(aws) if isinstance(aws, Emulator) and served is None else None
        passes = ["new rows", "rows updating"] if options.update else ["new rows"]
        for label in passes:
            if profile is not None:
                profile.enable()
            served_before = emulator.seconds if emulator is not None else 0.0
            seconds, cpu, counts = _import(account.id, raw, child, options.workers)
            if profile is not None:
                profile.disable()
            share = (
                f" (both processes; the emulator's {1000 * _APART_CPU / options.rows:.2f})"
                if child is not None
                else ""
            )
            if emulator is not None:
                served_ms = 1000 * (emulator.seconds - served_before) / options.rows
                share = f" (the emulator's requests {served_ms:.2f})"
            print(
                f"{label}: {options.rows:,} rows in {seconds:.1f} s, "
                f"{options.rows / seconds:.0f} rows/s, "
                f"CPU {1000 * cpu / options.rows:.2f} ms a row{share} {counts}"
            )
        if profile is not None:
            stats = pstats.Stats(profile).sort_stats("cumulative")
            stats.print_stats(45)
            stats.sort_stats("tottime").print_stats(30)
            print("\nInside the emulator (its requests, in their own threads):")
            stats = pstats.Stats(served).sort_stats("cumulative")
            stats.print_stats(45)
            stats.sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
