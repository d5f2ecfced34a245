"""Cold start of the API Lambda: a fresh Python process per run, as a new Lambda container.

In each child: import functions/api/app.py (what Lambda's init phase does), then the first
request (events/api_get_account.json with a valid key), which builds the app and opens the
first DynamoDB connection, then a second, warm request. The baseline does the same with a plain
FastAPI + Mangum app of one route and no talkturo import.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._aws import local_aws, sign_up

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("_coldstart_child.py")
API_HANDLER = ROOT / "functions" / "api" / "app.py"
BASELINE_HANDLER = Path(__file__).with_name("baseline_app.py")
EVENT = ROOT / "events" / "api_get_account.json"

COLUMNS = [
    ("import_ms", "import"),
    ("first_request_ms", "1st request"),
    ("total_ms", "import+1st"),
    ("warm_request_ms", "warm request"),
    ("process_ms", "process wall"),
]


def _run_child(handler: Path, event_file: Path) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(CHILD), str(handler), str(event_file)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=handler.parent,  # as on Lambda, the function's code is the working directory
        timeout=120,
        check=False,
    )
    wall = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"the child failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_ms"] = wall
    return result


def _precompile() -> None:
    """Compile every module's bytecode, as `sam build` (pip) does for the deployed layer.

    Without it, an environment with PYTHONDONTWRITEBYTECODE set compiles every module from
    source in every child, which no Lambda does, and the figures would measure the compiler.
    """
    import compileall
    import sysconfig

    for folder in (sysconfig.get_paths()["purelib"], str(ROOT / "layers" / "core")):
        compileall.compile_dir(folder, quiet=2, workers=0)


def _series(handler: Path, event_file: Path, runs: int) -> list[dict[str, Any]]:
    # A warm-up run, not counted: it fills the page cache.
    _run_child(handler, event_file)
    return [_run_child(handler, event_file) for _ in range(runs)]


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):6.0f} ({min(values):.0f}-{max(values):.0f})"


def run(runs: int = 5) -> None:
    print(f"\nAPI Lambda cold start: {runs} fresh processes each (+1 warm-up), times in ms,")
    print("median (min-max). Event: events/api_get_account.json with a valid key.\n")
    _precompile()
    with local_aws("talkturo-bench-cold") as _stack:
        _account, key = sign_up("Cold start bench")
        sample = json.loads(EVENT.read_text())
        sample["headers"]["authorization"] = f"Bearer {key}"
        with tempfile.TemporaryDirectory() as scratch:
            event_file = Path(scratch) / "event.json"
            event_file.write_text(json.dumps(sample))
            results = {
                "talkturo API (functions/api/app.py)": _series(API_HANDLER, event_file, runs),
                "baseline FastAPI+Mangum, 1 route": _series(BASELINE_HANDLER, event_file, runs),
            }
    name_width = max(len(name) for name in results) + 2
    header = "".join(f"{label:>18}" for _, label in COLUMNS)
    print(f"{'':{name_width}}{header}")
    for name, series in results.items():
        cells = "".join(f"{_cell([r[key] for r in series]):>18}" for key, _ in COLUMNS)
        print(f"{name:{name_width}}{cells}")
    for name, series in results.items():
        statuses = sorted({(r["status"], r["warm_status"]) for r in series})
        modules = statistics.median(r["modules_loaded"] for r in series)
        print(f"  {name}: HTTP status (1st, warm) {statuses}, {modules:.0f} modules imported")
    print(
        "\n  'process wall' adds interpreter start-up, as Lambda's init does. Lambda's 1024 MB"
        "\n  functions get about 0.6 vCPU, so expect slower figures there than on this machine."
    )
