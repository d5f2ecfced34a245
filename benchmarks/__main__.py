"""`python -m benchmarks [coldstart|calls|scale|voice|wakes|campaign|events|extraction|
analysis|billing|speech|spoken_emails]
[--runs N]`:
print the figures (all by default).

The voice benchmark alone: `python -m benchmarks voice [--levels 10,25,50] [--seconds S]
[--profile CALLS]` (`--profile`: one level with the service under cProfile).
The local platform at size alone: `python -m benchmarks scale` (`TALKTURO_BENCH_CONTACTS=5000`
for a quick run; 50,000 by default).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

BENCHMARKS = [
    "coldstart",
    "calls",
    "scale",
    "voice",
    "wakes",
    "campaign",
    "events",
    "extraction",
    "analysis",
    "billing",
    "speech",
    "spoken_emails",
]


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of call counts") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("call counts are positive")
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("which", nargs="?", choices=BENCHMARKS, help="run one benchmark")
    parser.add_argument("--only", choices=BENCHMARKS, help="run one benchmark (as `which`)")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per cold-start series")
    parser.add_argument("--levels", type=_levels, help="voice: simultaneous calls per level")
    parser.add_argument("--seconds", type=float, default=30.0, help="voice: measured per level")
    parser.add_argument("--profile", type=int, metavar="CALLS", help="voice: profile one level")
    options = parser.parse_args()
    only = options.which or options.only

    print(
        f"Talkturo benchmarks on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    if only in (None, "coldstart"):
        from benchmarks import coldstart

        coldstart.run(runs=options.runs)
    if only in (None, "calls"):
        from benchmarks import dynamodb_calls

        dynamodb_calls.run()
    if only in (None, "scale"):
        from benchmarks import scale

        scale.run()
    if only in (None, "voice"):
        from benchmarks import voice

        voice.run(
            options.levels or voice.LEVELS,
            seconds=options.seconds,
            profile_level=options.profile,
        )
    if only in (None, "wakes"):
        from benchmarks import wakes

        wakes.run()
    if only in (None, "campaign"):
        from benchmarks import campaign

        campaign.run()
    if only in (None, "events"):
        from benchmarks import events

        events.run()
    if only in (None, "extraction"):
        from benchmarks import extraction

        extraction.run()
    if only in (None, "analysis"):
        from benchmarks import analysis

        analysis.run()
    if only in (None, "billing"):
        from benchmarks import billing

        billing.run()
    if only in (None, "speech"):
        from benchmarks import speech

        speech.run()
    if only in (None, "spoken_emails"):
        from benchmarks import spoken_emails

        spoken_emails.run()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
