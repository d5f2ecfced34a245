"""The local platform at a customer's size: a CSV import of N contacts, then the API at that size.

Starts `talkturo dev` in a process of its own (free ports), imports N contacts (50,000, or
`TALKTURO_BENCH_CONTACTS`) as one CSV through `POST /v1/contact-imports`, as a user would,
and times it from the upload until the job reads `completed`. Then it times the main routes
over HTTP at that size (p50/p95 of sequential requests), and measures the platform's CPU while
idle (its process and the voice service's, from /proc ticks).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

CONTACTS = int(os.environ.get("TALKTURO_BENCH_CONTACTS", "50000"))
COMPANIES = 500
REQUESTS_PER_ROUTE = 60
IDLE_SECONDS = 20.0

# Targets (issue 8, "trust before scale").
ROWS_PER_SECOND = 500
P95_MS = 100.0
IDLE_CPU_PERCENT = 2.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Platform:
    process: subprocess.Popen[bytes]
    url: str
    api_key: str
    data_dir: Path

    def pids(self) -> list[int]:
        """The platform's process and its children (the emulator, the voice service, the
        import worker's processes), whichever of its threads started them."""
        tasks = Path(f"/proc/{self.process.pid}/task")
        children = [int(pid) for task in tasks.iterdir() for pid in _children(task)]
        return [self.process.pid, *children]


def _saved_since(platform: Platform, moment: float) -> float:
    """Seconds until the platform's snapshot is newer than `moment` (it saves every few
    seconds while something changed)."""
    state = platform.data_dir / "state.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if state.exists() and state.stat().st_mtime > moment:
            return time.time() - moment
        time.sleep(0.5)
    raise RuntimeError("the platform saved no snapshot in 180 s")


def _children(task: Path) -> list[str]:
    try:
        return (task / "children").read_text().split()
    except OSError:  # the thread ended meanwhile
        return []


@contextlib.contextmanager
def _platform() -> Iterator[Platform]:
    """`talkturo dev` as a user starts it, on free ports, with a development key of our own."""
    port = _free_port()
    api_key = "tk_bench_" + secrets.token_hex(16)
    command = [sys.executable, "-m", "talkturo.cli", "dev", "--port", str(port)]
    for option in ("--aws-port", "--carrier-port", "--stripe-port", "--voice-port"):
        command += [option, str(_free_port())]
    # A data folder of its own: the figures are for an empty platform, whatever a previous run
    # (or the user's own `talkturo dev`) left in the default one.
    data = tempfile.TemporaryDirectory(prefix="talkturo-bench-")
    env = {**os.environ, "TALKTURO_DEV_API_KEY": api_key, "TALKTURO_DATA_DIR": data.name}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    platform = Platform(process, f"http://127.0.0.1:{port}", api_key, Path(data.name))
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError("`talkturo dev` stopped while starting")
            try:
                httpx.get(f"{platform.url}/v1/account", headers=_auth(api_key)).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("`talkturo dev` did not answer in 120 s") from None
                time.sleep(0.5)
        yield platform
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        data.cleanup()


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def _phone(n: int) -> str:
    # New York numbers, +1 212 2xx xxxx: valid, and one per row.
    return f"+1212{2_000_000 + n}"


def csv_file(rows: int) -> bytes:
    lines = ["first_name,last_name,email,phone,company,tags"]
    for n in range(rows):
        tags = "vip;bench" if n % 10 == 0 else "bench"
        lines.append(
            f"First{n},Last{n},person{n}@example.com,{_phone(n)},Company {n % COMPANIES},{tags}"
        )
    return ("\n".join(lines) + "\n").encode()


def _import(api: httpx.Client, rows: int) -> tuple[float, dict[str, Any]]:
    raw = csv_file(rows)
    started = time.perf_counter()
    answer = api.post("/v1/contact-imports", content=raw, headers={"Content-Type": "text/csv"})
    answer.raise_for_status()
    job: dict[str, Any] = answer.json()
    deadline = time.monotonic() + max(600.0, rows / 20)
    while job["status"] not in ("completed", "failed"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the import did not finish: {job}")
        time.sleep(0.5)
        try:
            job = api.get(f"/v1/contact-imports/{job['id']}").json()
        except httpx.TransportError:
            continue  # a kept-alive connection the server closed meanwhile: ask again
    return time.perf_counter() - started, job


def _percentiles(api: httpx.Client, request: Callable[[int], httpx.Response]) -> tuple[float, ...]:
    times = []
    for n in range(REQUESTS_PER_ROUTE):
        started = time.perf_counter()
        answer = request(n)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    cuts = statistics.quantiles(times, n=20)
    return statistics.median(times), cuts[18]


def _ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _idle_cpu(pids: list[int], seconds: float) -> float:
    """Percent of one core the processes used over `seconds`."""
    before, started = sum(_ticks(pid) for pid in pids), time.monotonic()
    time.sleep(seconds)
    used = (sum(_ticks(pid) for pid in pids) - before) / os.sysconf("SC_CLK_TCK")
    return 100 * used / (time.monotonic() - started)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def run(contacts: int = CONTACTS) -> None:
    print(f"\nThe local platform at {contacts:,} contacts (`talkturo dev`)\n")
    with _platform() as platform:
        headers = _auth(platform.api_key)
        with httpx.Client(base_url=platform.url, headers=headers, timeout=60) as api:
            busy = sum(_ticks(pid) for pid in platform.pids())
            seconds, job = _import(api, contacts)
            busy = (sum(_ticks(pid) for pid in platform.pids()) - busy) / os.sysconf("SC_CLK_TCK")
            rate = contacts / seconds
            print(
                f"  CSV import of {contacts:,} rows: {seconds:.1f} s, {rate:.0f} rows/s "
                f"(created {job['created']:,}, updated {job['updated']:,}, "
                f"failed {job['failed']:,}, companies {job['created_companies']:,}; "
                f"status {job['status']})  target >= {ROWS_PER_SECOND} rows/s: "
                f"{_verdict(rate >= ROWS_PER_SECOND and job['status'] == 'completed')}"
            )
            print(
                f"  CPU of the platform during the import: {busy:.1f} s "
                f"({1000 * busy / contacts:.1f} ms a row)"
            )
            some = api.get("/v1/contacts", params={"limit": 1}).json()["data"][0]["id"]
            routes: list[tuple[str, Callable[[int], httpx.Response]]] = [
                ("GET /v1/account", lambda n: api.get("/v1/account")),
                ("GET /v1/contacts", lambda n: api.get("/v1/contacts")),
                ("GET /v1/contacts?tag=vip", lambda n: api.get("/v1/contacts?tag=vip")),
                ("GET /v1/contacts/{id}", lambda n: api.get(f"/v1/contacts/{some}")),
                (
                    "POST /v1/contacts",
                    lambda n: api.post(
                        "/v1/contacts",
                        json={"first_name": f"New{n}", "phone": _phone(contacts + n)},
                    ),
                ),
                ("GET /v1/companies", lambda n: api.get("/v1/companies")),
                ("GET /v1/calls", lambda n: api.get("/v1/calls")),
                (
                    "GET /v1/contact-imports/{id}",
                    lambda n: api.get(f"/v1/contact-imports/{job['id']}"),
                ),
            ]
            width = max(len(label) for label, _ in routes) + 2
            print(
                f"\n  {'route':{width}}{'p50':>9}{'p95':>9}  (of {REQUESTS_PER_ROUTE}, over HTTP)"
            )
            worst = 0.0
            for label, request in routes:
                p50, p95 = _percentiles(api, request)
                worst = max(worst, p95)
                print(f"  {label:{width}}{p50:>7.1f}ms{p95:>7.1f}ms")
            verdict = _verdict(worst < P95_MS)
            print(f"  slowest p95 {worst:.1f} ms  target < {P95_MS:.0f} ms: {verdict}")
        # Idle means nothing left to do: the snapshot of the routes' writes saved (a save at
        # this size is seconds of the emulator's CPU, work of those writes, not of idling).
        saved_after = _saved_since(platform, time.time())
        cpu = _idle_cpu(platform.pids(), IDLE_SECONDS)
        print(
            f"\n  (the last writes' snapshot saved {saved_after:.0f} s after them)"
            f"\n  Idle CPU over {IDLE_SECONDS:.0f} s (platform and voice service): "
            f"{cpu:.2f} % of a core  target < {IDLE_CPU_PERCENT:.0f} %: "
            f"{_verdict(cpu < IDLE_CPU_PERCENT)}"
        )
