"""`python -m benchmarks.analysis` runs, small: both paths analyse every call and fill its
contact (the figures themselves are the benchmark's, not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"(?P<label>model answering in 20 ms|offline \(extractor, no model\))\s+2 calls: "
    r"call\.analyzed written p50 \d+ ms, p95 \d+ ms; delivered p50 \d+ ms, p95 \d+ ms "
    r"\(mean \d+\); (?P<written>\d+)/4 CRM fields written"
)


def test_the_analysis_benchmark_runs_small() -> None:
    # A process of its own: the benchmark starts its own emulator and sets its environment.
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.analysis", "--calls", "2", "--model-ms", "20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    found = {m["label"]: int(m["written"]) for m in LINE.finditer(run.stdout)}
    assert found == {"model answering in 20 ms": 4, "offline (extractor, no model)": 4}, run.stdout
