"""`python -m benchmarks [--runs N] [--only coldstart|calls]`: print the figures."""

from __future__ import annotations

import argparse
import os
import platform
import sys


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per cold-start series")
    parser.add_argument("--only", choices=["coldstart", "calls"], help="run one benchmark")
    options = parser.parse_args()

    print(
        f"Talkturo benchmarks on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    if options.only in (None, "coldstart"):
        from benchmarks import coldstart

        coldstart.run(runs=options.runs)
    if options.only in (None, "calls"):
        from benchmarks import dynamodb_calls

        dynamodb_calls.run()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
