"""The contact-import worker alone: the emulator in this process, no `talkturo dev` around it.

`python -m benchmarks.import_worker [--rows N] [--update] [--profile]`: imports N contacts
(3,000 by default, `benchmarks.scale`'s CSV) chunk by chunk through the import service, as the
worker's Lambda does, and prints the rate. `--update` imports the same file a second time
(every row then updates its contact) and times that too; `--profile` runs the import under
cProfile and prints its top functions. What `benchmarks.scale` measures end to end, without
the HTTP, queue and snapshot around it: where the worker's own time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from typing import Any

import boto3

from benchmarks.scale import csv_file


def _import(account_id: str, raw: bytes) -> tuple[float, float, dict[str, int]]:
    from talkturo.domain.contact_imports import CHUNK_ROWS, ImportChunk
    from talkturo.services import contact_imports

    started, cpu = time.perf_counter(), time.process_time()
    job = contact_imports.start(account_id, raw, "text/csv")
    for row in range(0, job.total_rows, CHUNK_ROWS):
        contact_imports.process_chunk(
            ImportChunk(account_id=account_id, import_id=job.id, start_row=row)
        )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    done = contact_imports.get(account_id, job.id)
    assert done.status == "completed", done
    counts = {"created": done.created, "updated": done.updated, "failed": done.failed}
    return seconds, cpu, counts


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
    options = parser.parse_args()

    from talkturo import config, logs
    from talkturo.domain.accounts import AccountCreate
    from talkturo.local.emulator import Emulator
    from talkturo.local.template import provision
    from talkturo.services import accounts

    logs.logger.setLevel("WARNING")  # a line per chunk otherwise
    with Emulator() as aws:
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
        passes = ["new rows", "rows updating"] if options.update else ["new rows"]
        for label in passes:
            if profile is not None:
                profile.enable()
            seconds, cpu, counts = _import(account.id, raw)
            if profile is not None:
                profile.disable()
            print(
                f"{label}: {options.rows:,} rows in {seconds:.1f} s, "
                f"{options.rows / seconds:.0f} rows/s, "
                f"CPU {1000 * cpu / options.rows:.2f} ms a row {counts}"
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
